//! Run a test of the current test binary in a new process, as a user runs a printed replay line: shared by the harness, membership and replicated tests.
#![allow(dead_code)]

use std::process::Command;

/// Run one test of this binary in a new process with `vars` set (and every
/// other `IOLOOP_SIM_*` variable cleared); its exit success and output.
pub fn this_test(name: &str, vars: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        name,
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (key, _) in std::env::vars() {
        if key.starts_with("IOLOOP_SIM_") {
            command.env_remove(key);
        }
    }
    command.envs(vars.iter().copied());
    let output = command.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}
