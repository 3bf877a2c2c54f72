//! `staticlet plugins`: every plugin the agent loaded, with its kind, WIT version, digest,
//! health and call counts.

use clap::Args;
use serde_json::{Value, json};

use super::client::{Client, JSON, SocketArgs, block_on};
use super::get::render;

/// Arguments of `staticlet plugins`.
#[derive(Debug, Args)]
pub struct PluginsArgs {
    #[command(flatten)]
    socket: SocketArgs,
}

pub fn run(args: PluginsArgs) -> anyhow::Result<()> {
    let list = block_on(Client::new(&args.socket).get_json("/staticlet/v1/plugins", JSON))?;
    let text = |v: &Value| v.as_str().map_or_else(|| "<none>".to_owned(), str::to_owned);
    let rows: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let digest = p["digest"].as_str().map_or_else(|| "<none>".to_owned(), |d| format!("sha256:{}", &d[..d.len().min(12)]));
            json!({"cells": [text(&p["name"]), text(&p["kind"]), text(&p["witVersion"]), digest, text(&p["health"]),
                p["calls"].as_u64().unwrap_or(0).to_string(), p["failedCalls"].as_u64().unwrap_or(0).to_string(),
                p["message"].as_str().unwrap_or_default()]})
        })
        .collect();
    if rows.is_empty() {
        eprintln!("No plugins loaded");
        return Ok(());
    }
    let columns: Vec<Value> = ["Name", "Kind", "WIT", "Digest", "Health", "Calls", "Failed", "Message"]
        .iter()
        .map(|name| json!({"name": name, "priority": 0}))
        .collect();
    print!("{}", render(&json!({"columnDefinitions": columns, "rows": rows}), false, false));
    Ok(())
}
