//! `.ci/fuzz` without a nightly toolchain: a failure under `CI=true`, a
//! loud skip elsewhere. A fake `cargo` first on `PATH` plays the machine
//! without nightly.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Run `.ci/fuzz` with a `cargo` that has no nightly, `CI` as given.
fn run_without_nightly(ci: Option<&str>) -> Output {
    let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("no-nightly-{}", ci.unwrap_or("unset")));
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\necho \"error: toolchain 'nightly' is not installed\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/fuzz"))
        .env("PATH", path)
        .env_remove("CI");
    if let Some(ci) = ci {
        command.env("CI", ci);
    }
    command.output().unwrap()
}

#[test]
fn missing_nightly_fails_under_ci() {
    let output = run_without_nightly(Some("true"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "CI went green without fuzzing: {stderr}"
    );
    assert!(stderr.contains("FAIL"), "{stderr}");
}

#[test]
fn missing_nightly_skips_loudly_outside_ci() {
    let output = run_without_nightly(None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("SKIPPED"), "{stderr}");
}
