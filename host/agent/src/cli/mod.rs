//! The `staticlet` command line.

mod client;
mod describe;
mod get;
mod kubeconfig;
mod logs;
mod plugins;
mod restart;
mod run;
mod stream;
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
    Run(Box<run::RunArgs>),
    /// Check manifests offline with the agent's defaulting, validation and admission chain;
    /// prints `FILE: field.path: message` per violation and exits 1 when any is rejected.
    Validate(validate::ValidateArgs),
    /// List static pods with kubectl's columns: `staticlet get pods [NAME] [-o wide|yaml|json]`.
    Get(get::GetArgs),
    /// Show a pod's spec, container states and recent events: `staticlet describe pod NAME`.
    Describe(get::PodArgs),
    /// Print a container's logs: `staticlet logs NAME [-c C] [-f] [--tail N] [--previous]`.
    Logs(logs::LogsArgs),
    /// List the loaded plugins with their kind, WIT version, digest, health and call counts.
    Plugins(plugins::PluginsArgs),
    /// Stop every container of a static pod and start it afresh: `staticlet restart pod NAME`.
    Restart(get::PodArgs),
    /// Run a command in a container: `staticlet exec POD [-c C] [-i] [-t] -- COMMAND...`;
    /// exits with the command's code.
    Exec(stream::ExecArgs),
    /// Connect to a container's own stdin and output: `staticlet attach POD [-c C] [-i] [-t]`.
    Attach(stream::SessionArgs),
    /// Forward local ports to a pod: `staticlet port-forward POD [LOCAL:]REMOTE...`.
    PortForward(stream::PortForwardArgs),
    /// Copy files into or out of a container: `staticlet cp POD:PATH LOCAL` or the reverse.
    Cp(stream::CpArgs),
    /// Print the kubeconfig (with the agent's token) for kubectl against the local API.
    Kubeconfig(kubeconfig::KubeconfigArgs),
}

/// Runs the parsed command; the result is the process's exit.
///
/// # Errors
///
/// Whatever the subcommand reports, for `main` to print.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(*args).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(args),
        Command::Get(args) => get::run(args).map(|()| ExitCode::SUCCESS),
        Command::Describe(args) => describe::run(args).map(|()| ExitCode::SUCCESS),
        Command::Logs(args) => logs::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plugins(args) => plugins::run(args).map(|()| ExitCode::SUCCESS),
        Command::Restart(args) => restart::run(args).map(|()| ExitCode::SUCCESS),
        Command::Exec(args) => stream::exec(args),
        Command::Attach(args) => stream::attach(args),
        Command::PortForward(args) => stream::port_forward(args),
        Command::Cp(args) => stream::cp(args),
        Command::Kubeconfig(args) => kubeconfig::run(args).map(|()| ExitCode::SUCCESS),
    }
}
