//! The `staticlet` command line.

mod run;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runs Kubernetes static pods on any Linux host, with no control plane.
#[derive(Debug, Parser)]
#[command(name = "staticlet", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: watch the manifests and keep their pods running.
    Run(run::RunArgs),
    /// Check manifests offline with the agent's defaulting, validation and admission chain;
    /// prints `FILE: field.path: message` per violation and exits 1 when any is rejected.
    Validate(validate::ValidateArgs),
}

/// Runs the parsed command; the result is the process's exit.
///
/// # Errors
///
/// Whatever the subcommand reports, for `main` to print.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(args).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(args),
    }
}
