//! The streaming verbs over the agent's socket: `staticlet exec`, `attach`, `port-forward` and
//! `cp`, with kubectl's arguments and output. They speak the Kubernetes WebSocket protocols
//! through kube-rs's client, as any Kubernetes client would, with the bearer token the agent
//! keeps under its root dir.

use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use super::client::SocketArgs;
use crate::config::DEFAULT_ROOT_DIR;
use crate::state::Layout;

/// Where the agent's API is and the credential it wants.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// The agent's --root-dir, which holds the token (`api-token`) the streaming verbs need.
    #[arg(long, value_name = "DIR", env = "STATICLET_ROOT_DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,

    #[command(flatten)]
    socket: SocketArgs,
}

impl AccessArgs {
    /// The agent's pods, in `namespace`, through a client of its socket carrying the token.
    fn pods(&self, namespace: &str) -> anyhow::Result<kube::Api<Pod>> {
        let token_file = Layout::new(&self.root_dir).api_token();
        let token = std::fs::read_to_string(&token_file).with_context(|| {
            format!(
                "reading the agent's token {} (the streaming verbs need it: run as the agent's user, or pass --root-dir)",
                token_file.display()
            )
        })?;
        let credential = format!("Bearer {}", token.trim());
        let socket = self.socket.api_socket.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            Box::pin(async move {
                UnixStream::connect(&socket)
                    .await
                    .map(TokioIo::new)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot reach the agent at {}: {e}", socket.display())))
            })
        });
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build::<_, kube::client::Body>(connector);
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<kube::client::Body>| {
                let mut uri = request.uri().clone().into_parts();
                // The socket ignores the authority; hyper wants one to send the request.
                uri.scheme = Some(http::uri::Scheme::HTTP);
                uri.authority = Some(http::uri::Authority::from_static("localhost"));
                *request.uri_mut() = http::Uri::from_parts(uri).expect("a path and an authority make a URI");
                request.headers_mut().insert(http::header::AUTHORIZATION, credential.parse().expect("a token is a header value"));
                request
            })
            .service(http);
        Ok(kube::Api::namespaced(kube::Client::new(service, namespace), namespace))
    }
}

/// A process session in a container, as `exec` and `attach` take it.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// The pod's name (`<manifest name>-<node>`).
    #[arg(value_name = "POD")]
    pod: String,

    /// The container; may be left out when the pod has one (or names its default).
    #[arg(short, long)]
    container: Option<String>,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    /// Pass this terminal's stdin to the process (for attach, the container must have
    /// `stdin: true`).
    #[arg(short = 'i', long)]
    stdin: bool,

    /// A TTY: exec gives the command one, attach expects the container's (`tty: true`); with
    /// -i, this terminal is put in raw mode.
    #[arg(short = 't', long)]
    tty: bool,

    #[command(flatten)]
    access: AccessArgs,
}

impl SessionArgs {
    fn params(&self) -> AttachParams {
        // With a TTY the runtime merges stderr into the terminal, as kubectl asks it to.
        AttachParams {
            container: self.container.clone(),
            stdin: self.stdin,
            stdout: true,
            stderr: !self.tty,
            tty: self.tty,
            ..AttachParams::default()
        }
    }
}

/// Arguments of `staticlet exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    session: SessionArgs,

    /// The command and its arguments, after `--`.
    #[arg(value_name = "COMMAND", last = true, required = true)]
    command: Vec<String>,
}

/// Arguments of `staticlet port-forward`.
#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// The pod's name.
    #[arg(value_name = "POD")]
    pod: String,

    /// Ports as kubectl takes them: `8080:80` (local 8080 to the pod's 80), `80` (the same on
    /// both sides) or `:80` (a free local port).
    #[arg(value_name = "[LOCAL:]REMOTE", required = true)]
    ports: Vec<String>,

    /// The local address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,

    /// The namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    #[command(flatten)]
    access: AccessArgs,
}

/// Arguments of `staticlet cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a local path, or `POD:PATH` (`NAMESPACE/POD:PATH`) in a container.
    #[arg(value_name = "SRC")]
    source: String,

    /// Where to: the other side.
    #[arg(value_name = "DEST")]
    destination: String,

    /// The container; may be left out when the pod has one.
    #[arg(short, long)]
    container: Option<String>,

    /// The namespace, for `POD:PATH` without one.
    #[arg(short, long, default_value = "default")]
    namespace: String,

    #[command(flatten)]
    access: AccessArgs,
}

/// `staticlet exec`: exits with the command's exit code, as kubectl does.
///
/// # Errors
///
/// When the agent cannot be reached or refuses, or the command cannot be started.
pub fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let session = args.session;
    on_runtime(async move {
        let pods = session.access.pods(&session.namespace)?;
        let process = pods.exec(&session.pod, args.command, &session.params()).await.map_err(api_error)?;
        interact(process, session.stdin, session.tty).await
    })
}

/// `staticlet attach`.
///
/// # Errors
///
/// When the agent cannot be reached or refuses.
pub fn attach(session: SessionArgs) -> anyhow::Result<ExitCode> {
    on_runtime(async move {
        let pods = session.access.pods(&session.namespace)?;
        let process = pods.attach(&session.pod, &session.params()).await.map_err(api_error)?;
        interact(process, session.stdin, session.tty).await
    })
}

/// Joins this terminal to the process until it ends; the exit code is the process's.
async fn interact(mut process: AttachedProcess, stdin: bool, tty: bool) -> anyhow::Result<ExitCode> {
    let _raw = (stdin && tty).then(RawTerminal::enter).transpose()?;
    if tty && let Some(mut sizes) = process.terminal_size() {
        tokio::spawn(async move {
            let Ok(mut changes) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else { return };
            loop {
                if let Ok((width, height)) = crossterm::terminal::size()
                    && futures::SinkExt::send(&mut sizes, TerminalSize { width, height }).await.is_err()
                {
                    break;
                }
                if changes.recv().await.is_none() {
                    break;
                }
            }
        });
    }
    if stdin && let Some(mut remote) = process.stdin() {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut remote).await;
            let _ = remote.shutdown().await;
        });
    }
    let stdout = process.stdout().map(|from| tokio::spawn(pipe(from, tokio::io::stdout())));
    let stderr = process.stderr().map(|from| tokio::spawn(pipe(from, tokio::io::stderr())));
    let status = process.take_status().expect("a new process has its status").await;
    for copy in [stdout, stderr].into_iter().flatten() {
        let _ = copy.await;
    }
    drop(_raw);
    exit_code(status)
}

async fn pipe(mut from: impl AsyncRead + Unpin, mut to: impl AsyncWrite + Unpin) {
    let mut buffer = vec![0u8; 32 * 1024];
    while let Ok(n) = from.read(&mut buffer).await {
        if n == 0 || to.write_all(&buffer[..n]).await.is_err() || to.flush().await.is_err() {
            break;
        }
    }
}

/// The exit code a remote command's Status carries, and kubectl's message for it.
fn exit_code(status: Option<Status>) -> anyhow::Result<ExitCode> {
    let Some(status) = status else { return Ok(ExitCode::SUCCESS) };
    if status.status.as_deref() == Some("Success") {
        return Ok(ExitCode::SUCCESS);
    }
    let code = (status.reason.as_deref() == Some("NonZeroExitCode"))
        .then(|| {
            status
                .details
                .as_ref()?
                .causes
                .as_ref()?
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))?
                .message
                .as_ref()?
                .parse::<u8>()
                .ok()
        })
        .flatten();
    match code {
        Some(code) => {
            eprintln!("command terminated with exit code {code}");
            Ok(ExitCode::from(code))
        }
        None => Err(anyhow!("{}", status.message.unwrap_or_else(|| "the command failed".into()))),
    }
}

/// This terminal in raw mode, restored when dropped (also when the command fails).
struct RawTerminal;

impl RawTerminal {
    fn enter() -> anyhow::Result<RawTerminal> {
        crossterm::terminal::enable_raw_mode().context("putting the terminal in raw mode (is stdin a terminal?)")?;
        Ok(RawTerminal)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// `staticlet port-forward`: listens until interrupted; each connection is forwarded over a
/// connection of its own to the agent.
///
/// # Errors
///
/// When a port is not valid or cannot be listened on.
pub fn port_forward(args: PortForwardArgs) -> anyhow::Result<ExitCode> {
    on_runtime(async move {
        let pods = args.access.pods(&args.namespace)?;
        // Fail now, as kubectl does, when the pod is not there.
        pods.get(&args.pod).await.map_err(api_error)?;
        let mut forwards = Vec::new();
        for spec in &args.ports {
            let (local, remote) = parse_ports(spec)?;
            let listener =
                TcpListener::bind((args.address, local)).await.with_context(|| format!("listening on {}:{local}", args.address))?;
            println!("Forwarding from {} -> {remote}", listener.local_addr()?);
            let (pods, pod) = (pods.clone(), args.pod.clone());
            forwards.push(tokio::spawn(async move {
                loop {
                    let Ok((connection, _)) = listener.accept().await else { continue };
                    println!("Handling connection for {}", listener.local_addr().map_or(remote, |a| a.port()));
                    let (pods, pod) = (pods.clone(), pod.clone());
                    tokio::spawn(async move {
                        if let Err(e) = forward(&pods, &pod, remote, connection).await {
                            eprintln!("E forwarding to port {remote}: {e:#}");
                        }
                    });
                }
            }));
        }
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn forward(pods: &kube::Api<Pod>, pod: &str, port: u16, mut connection: tokio::net::TcpStream) -> anyhow::Result<()> {
    let mut forwarder = pods.portforward(pod, &[port]).await.map_err(api_error)?;
    let mut upstream = forwarder.take_stream(port).context("the agent opened no stream for the port")?;
    let error = forwarder.take_error(port);
    tokio::io::copy_bidirectional(&mut connection, &mut upstream).await.ok();
    drop(upstream);
    if let Some(error) = error
        && let Some(message) = error.now_or_never().flatten()
    {
        bail!("{message}");
    }
    forwarder.join().await.ok();
    Ok(())
}

/// `[LOCAL:]REMOTE` → (local, remote); a missing local is the remote, an empty one is 0.
fn parse_ports(spec: &str) -> anyhow::Result<(u16, u16)> {
    let port = |text: &str| text.parse::<u16>().with_context(|| format!("{spec}: {text:?} is not a port number"));
    match spec.split_once(':') {
        Some(("", remote)) => Ok((0, port(remote)?)),
        Some((local, remote)) => Ok((port(local)?, port(remote)?)),
        None => Ok((port(spec)?, port(spec)?)),
    }
}

/// One side of `staticlet cp`.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Pod { namespace: Option<String>, pod: String, path: String },
}

impl Place {
    /// kubectl's reading: `[NAMESPACE/]POD:PATH` is in a pod, anything else (or a path that
    /// exists here) is local.
    fn parse(text: &str) -> Place {
        if Path::new(text).exists() {
            return Place::Local(text.into());
        }
        match text.split_once(':') {
            Some((target, path)) if !target.is_empty() && !target.contains('.') => {
                let (namespace, pod) = match target.split_once('/') {
                    Some((namespace, pod)) => (Some(namespace.to_owned()), pod.to_owned()),
                    None => (None, target.to_owned()),
                };
                Place::Pod { namespace, pod, path: path.to_owned() }
            }
            _ => Place::Local(text.into()),
        }
    }
}

/// `staticlet cp`: through `tar` in the container, as kubectl does, so the image needs `tar`.
///
/// # Errors
///
/// When neither or both sides are in a pod, or tar fails on either side.
pub fn cp(args: CpArgs) -> anyhow::Result<ExitCode> {
    on_runtime(async move {
        match (Place::parse(&args.source), Place::parse(&args.destination)) {
            (Place::Pod { namespace, pod, path }, Place::Local(to)) => {
                let pods = args.access.pods(namespace.as_deref().unwrap_or(&args.namespace))?;
                copy_out(&pods, &pod, args.container, &path, &to).await
            }
            (Place::Local(from), Place::Pod { namespace, pod, path }) => {
                let pods = args.access.pods(namespace.as_deref().unwrap_or(&args.namespace))?;
                copy_in(&pods, &pod, args.container, &from, &path).await
            }
            _ => bail!("one of SRC and DEST must be local and the other POD:PATH"),
        }
    })
}

async fn copy_out(pods: &kube::Api<Pod>, pod: &str, container: Option<String>, path: &str, to: &Path) -> anyhow::Result<ExitCode> {
    let (dir, name) = split_remote(path)?;
    let params = AttachParams { container, stdin: false, stdout: true, stderr: true, ..AttachParams::default() };
    let mut process = pods.exec(pod, ["tar", "cf", "-", "-C", dir, name], &params).await.map_err(api_error)?;
    let mut archive = Vec::new();
    let mut stdout = process.stdout().context("the agent sent no stdout")?;
    let errors = process.stderr().map(|from| tokio::spawn(pipe(from, tokio::io::stderr())));
    stdout.read_to_end(&mut archive).await.context("reading the archive from the container")?;
    let status = process.take_status().expect("a new process has its status").await;
    if let Some(errors) = errors {
        let _ = errors.await;
    }
    let code = exit_code(status)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let to = to.to_owned();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || unpack(&archive, &name, &to)).await??;
    Ok(ExitCode::SUCCESS)
}

/// Unpacks `archive`, whose entries all start with `name`, so that `name` becomes `to`. An
/// entry that would land outside `to` (`..`, an absolute path, a link) is refused.
fn unpack(archive: &[u8], name: &str, to: &Path) -> anyhow::Result<()> {
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().context("reading the container's archive")? {
        let mut entry = entry.context("reading the container's archive")?;
        let path = entry.path().context("an entry's path")?.into_owned();
        let relative = path.strip_prefix(name).with_context(|| format!("the archive holds {} outside {name}", path.display()))?;
        if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
            bail!("refusing the archive entry {}: it would leave {}", path.display(), to.display());
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            eprintln!("skipping {}: only files and directories are copied", path.display());
            continue;
        }
        let target = to.join(relative);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        } else {
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            entry.unpack(&target).with_context(|| format!("writing {}", target.display()))?;
        }
    }
    Ok(())
}

async fn copy_in(pods: &kube::Api<Pod>, pod: &str, container: Option<String>, from: &Path, path: &str) -> anyhow::Result<ExitCode> {
    let (dir, name) = split_remote(path)?;
    let (from, entry) = (from.to_owned(), name.to_owned());
    let archive = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        if from.is_dir() { builder.append_dir_all(&entry, &from) } else { builder.append_path_with_name(&from, &entry) }
            .with_context(|| format!("reading {}", from.display()))?;
        builder.into_inner().context("finishing the archive")
    })
    .await??;
    let params = AttachParams { container, stdin: true, stdout: true, stderr: true, ..AttachParams::default() };
    let mut process = pods.exec(pod, ["tar", "xmf", "-", "-C", dir], &params).await.map_err(api_error)?;
    let mut stdin = process.stdin().context("the agent took no stdin")?;
    let output = [
        process.stdout().map(|from| tokio::spawn(pipe(from, tokio::io::stdout()))),
        process.stderr().map(|from| tokio::spawn(pipe(from, tokio::io::stderr()))),
    ];
    stdin.write_all(&archive).await.context("sending the archive to the container")?;
    stdin.shutdown().await.context("closing the container's stdin")?;
    let status = process.take_status().expect("a new process has its status").await;
    for copy in output.into_iter().flatten() {
        let _ = copy.await;
    }
    exit_code(status)
}

/// `/dir/name` → (`/dir`, `name`); a path in a container is taken from `/` when relative, as
/// tar in the container's working directory would not know where the user meant.
fn split_remote(path: &str) -> anyhow::Result<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((dir, name)) if !name.is_empty() && name != ".." && name != "." => Ok((if dir.is_empty() { "/" } else { dir }, name)),
        None if !trimmed.is_empty() && trimmed != ".." && trimmed != "." => Ok((".", trimmed)),
        _ => bail!("{path}: name a file or directory in the container"),
    }
}

/// An API error as kubectl prints it.
fn api_error(error: kube::Error) -> anyhow::Error {
    match error {
        kube::Error::Api(status) => anyhow!("Error from server ({}): {}", status.reason, status.message),
        other => anyhow!(other),
    }
}

/// Runs a streaming verb on a runtime of its own, then leaves without waiting for a read of
/// this terminal that will never finish.
fn on_runtime(future: impl Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the async runtime")?;
    let result = runtime.block_on(future);
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_places_are_read_as_kubectl_reads_them() {
        assert_eq!(parse_ports("8080:80").unwrap(), (8080, 80));
        assert_eq!(parse_ports("80").unwrap(), (80, 80));
        assert_eq!(parse_ports(":80").unwrap(), (0, 80));
        assert!(parse_ports("http").is_err());

        assert_eq!(Place::parse("web:/etc/hosts"), Place::Pod { namespace: None, pod: "web".into(), path: "/etc/hosts".into() });
        assert_eq!(
            Place::parse("kube-system/web:/x"),
            Place::Pod { namespace: Some("kube-system".into()), pod: "web".into(), path: "/x".into() }
        );
        assert_eq!(Place::parse("./local-file"), Place::Local("./local-file".into()));
        assert_eq!(split_remote("/etc/hosts").unwrap(), ("/etc", "hosts"));
        assert_eq!(split_remote("/data/").unwrap(), ("/", "data"));
        assert!(split_remote("/").is_err());
    }

    #[test]
    fn an_archive_cannot_write_outside_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, "name/ok", &b"good"[..]).unwrap();
        let good = builder.into_inner().unwrap();
        unpack(&good, "name", &dir.path().join("to")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("to/ok")).unwrap(), b"good");

        // The tar crate refuses to write `..` into a header's name, so set the bytes by hand.
        let mut evil = good.clone();
        let name = b"name/../../evil";
        evil[..100].fill(0);
        evil[..name.len()].copy_from_slice(name);
        let mut header = tar::Header::new_old();
        header.as_mut_bytes().copy_from_slice(&evil[..512]);
        header.set_cksum();
        evil[..512].copy_from_slice(header.as_bytes());
        assert!(unpack(&evil, "name", &dir.path().join("to")).is_err());
        assert!(!dir.path().join("evil").exists());
    }
}
