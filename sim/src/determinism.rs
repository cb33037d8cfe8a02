//! Determinism checks: run a seed twice and name the first decision where the runs part.

use std::process::Command;

use crate::scenario::{self, RunConfig};

/// Where two runs of one seed part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// Index (from 0) of the first line that differs.
    pub index: usize,
    /// The line before it, common to both runs.
    pub before: Option<String>,
    /// That line in the first run (`None`: the run had ended).
    pub first: Option<String>,
    /// That line in the second run.
    pub second: Option<String>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |line: &Option<String>| line.clone().unwrap_or_else(|| "(end of run)".into());
        writeln!(f, "first divergence at decision {}:", self.index)?;
        if let Some(before) = &self.before {
            writeln!(f, "  both:   {before}")?;
        }
        writeln!(f, "  run 1:  {}", show(&self.first))?;
        write!(f, "  run 2:  {}", show(&self.second))
    }
}

/// The first line where `a` and `b` differ.
pub fn first_divergence(a: &[String], b: &[String]) -> Option<Divergence> {
    let index = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    Some(Divergence {
        index,
        before: index.checked_sub(1).and_then(|i| a.get(i).cloned()),
        first: a.get(index).cloned(),
        second: b.get(index).cloned(),
    })
}

/// Run `config` twice in this process, with full traces; compare every
/// decision and the outcome.
pub fn check_in_process(config: &RunConfig) -> Result<(), Divergence> {
    let full = RunConfig {
        trace_full: true,
        ..config.clone()
    };
    let lines = |outcome: scenario::Outcome| {
        let mut lines = outcome.trace_lines;
        lines.push(format!("outcome: {:?}", outcome.failure));
        lines.push(format!(
            "results: {:?} received: {:?}",
            outcome.results, outcome.received
        ));
        lines.push(format!("trace_hash={:016x}", outcome.trace_hash));
        lines
    };
    let first = lines(scenario::run(&full));
    let second = lines(scenario::run(&full));
    first_divergence(&first, &second).map_or(Ok(()), Err)
}

/// Run `config` twice, each in a new process of the `sim` binary `exe`
/// (`replay --trace`), and compare their whole output. A process that
/// prints no trace hash (it crashed, or was not the `sim` binary) is an
/// `Err`, not a match: two runs that both print nothing agree on nothing.
pub fn check_in_processes(
    exe: &std::path::Path,
    config: &RunConfig,
) -> Result<Result<(), Divergence>, String> {
    let mut args = config.replay_args();
    args.push("--trace".into());
    let run = || -> Result<Vec<String>, String> {
        let output = Command::new(exe)
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(String::from)
            .collect();
        if !lines
            .last()
            .is_some_and(|line| line.starts_with("trace_hash="))
        {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            return Err(format!(
                "{} {} printed no trace hash ({}): {}",
                exe.display(),
                args.join(" "),
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
        Ok(lines)
    };
    let first = run()?;
    let second = run()?;
    Ok(first_divergence(&first, &second).map_or(Ok(()), Err))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn processes_that_print_no_trace_hash_are_an_error_not_a_match() {
        // `true` prints nothing and exits 0: two such runs "agree".
        let config = RunConfig {
            scenario: scenario::Scenario::Echo,
            seed: 1,
            faults: crate::FaultPreset::None,
            workload: scenario::Workload::random(1, 1, 8),
            trace_full: false,
            liveness_after: None,
        };
        let error = check_in_processes(std::path::Path::new("true"), &config)
            .expect_err("no trace hash, no verdict");
        assert!(error.contains("printed no trace hash"), "{error}");
    }

    #[test]
    fn names_the_first_differing_line_and_its_context() {
        let a = lines(&["x", "y", "server dispatch fd5#2 READ"]);
        let b = lines(&["x", "y", "server dispatch fd6#1 READ"]);
        let divergence = first_divergence(&a, &b).unwrap();
        assert_eq!(divergence.index, 2);
        assert_eq!(divergence.before.as_deref(), Some("y"));
        assert!(divergence.to_string().contains("fd6#1"));
        assert_eq!(first_divergence(&a, &a), None);
        assert_eq!(first_divergence(&a, &a[..2]).unwrap().second, None);
    }
}
