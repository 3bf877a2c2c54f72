//! `staticlet logs NAME`: a container's output, as `kubectl logs` prints it.

use std::io::Write;

use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use super::client::{Client, JSON, SocketArgs, block_on, encode, pod_path};

/// Arguments of `staticlet logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod's name (`<manifest name>-<node>`).
    #[arg(value_name = "NAME")]
    name: String,

    /// The container; may be left out when the pod has one.
    #[arg(short, long)]
    container: Option<String>,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    /// Keep printing what the container writes.
    #[arg(short, long)]
    follow: bool,

    /// Only the last lines.
    #[arg(long, value_name = "N")]
    tail: Option<u64>,

    /// The previous instance of the container, the one that exited before this one started.
    #[arg(short, long)]
    previous: bool,

    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(long)]
    timestamps: bool,

    #[command(flatten)]
    socket: SocketArgs,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.socket);
    let mut path = format!(
        "{}/log?follow={}&previous={}&timestamps={}",
        pod_path(&args.namespace, &args.name),
        args.follow,
        args.previous,
        args.timestamps
    );
    if let Some(container) = &args.container {
        path.push_str(&format!("&container={}", encode(container)));
    }
    if let Some(tail) = args.tail {
        path.push_str(&format!("&tailLines={tail}"));
    }
    block_on(async {
        let mut body = client.send(Method::GET, &path, JSON).await?.into_body();
        let mut out = std::io::stdout();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data)?;
                out.flush()?;
            }
        }
        Ok(())
    })
}
