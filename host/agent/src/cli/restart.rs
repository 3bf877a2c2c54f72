//! `staticlet restart pod NAME`: stops every container of a static pod and starts the pod
//! afresh, without touching its manifest.

use clap::Args;
use hyper::Method;

use super::client::{Client, JSON, SocketArgs, block_on, encode};
use super::get::require_pods;

/// Arguments of `staticlet restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The resource: `pod`.
    #[arg(value_name = "RESOURCE")]
    resource: String,

    /// The pod's name (`<manifest name>-<node>`).
    #[arg(value_name = "NAME")]
    name: String,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    #[command(flatten)]
    socket: SocketArgs,
}

pub fn run(args: RestartArgs) -> anyhow::Result<()> {
    require_pods(&args.resource)?;
    let path = format!("/staticlet/v1/namespaces/{}/pods/{}/restart", encode(&args.namespace), encode(&args.name));
    block_on(Client::new(&args.socket).send(Method::POST, &path, JSON))?;
    println!("pod/{} restarted", args.name);
    Ok(())
}
