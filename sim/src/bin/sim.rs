//! The `sim` command: run many seeds of a scenario, replay one, list scenarios.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match ioloop_sim::cli::parse(std::env::args_os().skip(1)) {
        Ok(cli) => cli,
        // clap prints the message; exit status 2 for bad arguments, 0 for --help.
        Err(error) => error.exit(),
    };
    let status = ioloop_sim::cli::execute(&cli, &mut std::io::stdout().lock());
    ExitCode::from(status)
}
