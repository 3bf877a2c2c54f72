//! `staticlet get pods`: kubectl's columns, read from the agent's API.

use std::io::Write;

use anyhow::bail;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::client::{Client, JSON, SocketArgs, TABLE, block_on, encode, pod_path};

/// Output formats, as kubectl names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// More columns: IP, node, nominated node, readiness gates.
    Wide,
    /// The pods as YAML.
    Yaml,
    /// The pods as JSON.
    Json,
}

/// Arguments of `staticlet get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The resource: `pods` (or `pod`, `po`).
    #[arg(value_name = "RESOURCE")]
    resource: String,

    /// One pod's name; all pods when left out.
    #[arg(value_name = "NAME")]
    name: Option<String>,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,

    /// Only pods whose labels match (`app=web`, `tier in (edge,core)`, `!canary`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,

    /// Output format.
    #[arg(short, long, value_enum)]
    output: Option<Output>,

    #[command(flatten)]
    socket: SocketArgs,
}

/// Checks the resource argument names pods.
fn require_pods(resource: &str) -> anyhow::Result<()> {
    if !matches!(resource, "pods" | "pod" | "po") {
        bail!("the server doesn't have a resource type \"{resource}\" (staticlet serves pods)");
    }
    Ok(())
}

/// One pod, named as kubectl names it: `pod NAME [-n NAMESPACE]`.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// The resource: `pod` (or `pods`, `po`).
    #[arg(value_name = "RESOURCE")]
    resource: String,

    /// The pod's name (`<manifest name>-<node>`).
    #[arg(value_name = "NAME")]
    pub name: String,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,

    #[command(flatten)]
    pub socket: SocketArgs,
}

impl PodArgs {
    /// Checks the resource argument names pods.
    ///
    /// # Errors
    ///
    /// Another resource, in kubectl's words.
    pub fn check(&self) -> anyhow::Result<()> {
        require_pods(&self.resource)
    }
}

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    require_pods(&args.resource)?;
    let client = Client::new(&args.socket);
    let mut path = match (&args.name, args.all_namespaces) {
        (Some(name), _) => pod_path(&args.namespace, name),
        (None, true) => "/api/v1/pods".to_owned(),
        (None, false) => format!("/api/v1/namespaces/{}/pods", encode(&args.namespace)),
    };
    if let Some(selector) = &args.selector {
        path.push_str(&format!("?labelSelector={}", encode(selector)));
    }
    let mut out = std::io::stdout().lock();
    match args.output {
        Some(format @ (Output::Yaml | Output::Json)) => {
            let mut document = block_on(client.get_json(&path, JSON))?;
            if args.name.is_none() {
                // kubectl prints a list of objects as a `List`.
                document = json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": document["items"]});
            }
            if format == Output::Json {
                writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
            } else {
                write!(out, "{}", staticlet_model::yaml::to_string(&document)?)?;
            }
        }
        wide => {
            let table = block_on(client.get_json(&path, TABLE))?;
            if table["rows"].as_array().is_none_or(Vec::is_empty) {
                if args.all_namespaces {
                    eprintln!("No resources found");
                } else {
                    eprintln!("No resources found in {} namespace.", args.namespace);
                }
                return Ok(());
            }
            write!(out, "{}", render(&table, wide == Some(Output::Wide), args.all_namespaces))?;
        }
    }
    Ok(())
}

/// A Table as kubectl prints it: upper-case headers, columns padded to their widest cell and
/// three spaces apart; `wide` adds the priority-1 columns, `namespaces` a NAMESPACE column.
pub fn render(table: &Value, wide: bool, namespaces: bool) -> String {
    let columns = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
    let shown: Vec<usize> =
        columns.iter().enumerate().filter(|(_, c)| wide || c["priority"].as_u64().unwrap_or(0) == 0).map(|(i, _)| i).collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header: Vec<String> = shown.iter().map(|i| columns[*i]["name"].as_str().unwrap_or_default().to_uppercase()).collect();
    if namespaces {
        header.insert(0, "NAMESPACE".into());
    }
    lines.push(header);
    for row in table["rows"].as_array().into_iter().flatten() {
        let cells = row["cells"].as_array().cloned().unwrap_or_default();
        let mut line: Vec<String> = shown.iter().map(|i| cell(cells.get(*i))).collect();
        if namespaces {
            line.insert(0, row["object"]["metadata"]["namespace"].as_str().unwrap_or_default().to_owned());
        }
        lines.push(line);
    }
    let widths: Vec<usize> =
        (0..lines[0].len()).map(|i| lines.iter().map(|l| l.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
    let mut text = String::new();
    for line in lines {
        let last = line.len().saturating_sub(1);
        for (i, value) in line.iter().enumerate() {
            if i == last {
                text.push_str(value);
            } else {
                text.push_str(&format!("{value:<width$}   ", width = widths[i]));
            }
        }
        text.push('\n');
    }
    text
}

fn cell(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "<none>".to_owned(),
        Some(other) => other.to_string(),
    }
}
