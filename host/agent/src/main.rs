//! The `staticlet` binary.

use clap::Parser;
use staticlet::cli::{Cli, Command};
use staticlet::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The daemon logs what it does; one-shot commands speak through their output and log only
    // what went wrong.
    let (default_level, format) = match &cli.command {
        Command::Run(args) => (args.log_filter(), args.log_format()),
        _ => ("warn", LogFormat::Text),
    };
    // wasi-http warns of every failed outbound request a plugin makes, without saying which
    // plugin; the plugin's own error and the egress check report it with the name.
    let default_filter = format!("{default_level},wasmtime_wasi_http=error");
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("STATICLET_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
    }
    match staticlet::cli::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("staticlet: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
