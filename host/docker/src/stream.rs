//! The interactive calls over Docker's API: exec and attach through its exec and attach
//! endpoints (hijacked connections), and port-forward through the sandbox's network namespace,
//! as the kubelet's dockershim did.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::query_parameters::{AttachContainerOptions, InspectContainerOptions, ResizeContainerTTYOptions};
use futures::{FutureExt, StreamExt};
use staticlet_runtime::{Duplex, RuntimeError, StreamOptions, StreamOutput, StreamSession, TerminalSize};
use tokio::sync::mpsc;
use tracing::debug;

use crate::map_error;

/// Resizes queued before the runtime has applied the previous ones; a terminal sends a burst
/// while its window is dragged and only the last one matters.
const RESIZE_QUEUE: usize = 8;

/// How long a port-forward waits for the pod's port to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn exec(
    docker: &Docker,
    container_id: &str,
    cmd: &[String],
    options: StreamOptions,
) -> Result<StreamSession, RuntimeError> {
    if cmd.is_empty() {
        return Err(RuntimeError::Call { call: "exec", message: "the command is empty".into() });
    }
    let create = CreateExecOptions {
        cmd: Some(cmd.to_vec()),
        attach_stdin: Some(options.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(options.tty),
        ..CreateExecOptions::default()
    };
    let exec = docker.create_exec(container_id, create).await.map_err(|e| map_error("exec", container_id, e))?;
    let start = StartExecOptions { detach: false, tty: options.tty, output_capacity: None };
    let StartExecResults::Attached { output, input } =
        docker.start_exec(&exec.id, Some(start)).await.map_err(|e| map_error("exec", container_id, e))?
    else {
        return Err(RuntimeError::Call { call: "exec", message: "Docker detached the exec instance".into() });
    };
    let resize = options.tty.then(|| {
        let (docker, id) = (docker.clone(), exec.id.clone());
        resizer(move |size| {
            let (docker, id) = (docker.clone(), id.clone());
            async move { docker.resize_exec(&id, ResizeExecOptions { height: size.height, width: size.width }).await }
        })
    });
    let (docker, exec_id, id) = (docker.clone(), exec.id, container_id.to_owned());
    let exit = async move {
        let inspect = docker.inspect_exec(&exec_id).await.map_err(|e| map_error("exec", &id, e))?;
        Ok(inspect.exit_code.map(|code| code as i32))
    };
    Ok(StreamSession {
        stdin: options.stdin.then_some(input),
        output: output_stream("exec", container_id, output),
        resize,
        exit: exit.boxed(),
    })
}

pub(crate) async fn attach(docker: &Docker, container_id: &str, options: StreamOptions) -> Result<StreamSession, RuntimeError> {
    let attach = AttachContainerOptions { stdin: options.stdin, stdout: true, stderr: true, stream: true, logs: false, detach_keys: None };
    let attached = docker.attach_container(container_id, Some(attach)).await.map_err(|e| map_error("attach", container_id, e))?;
    let resize = options.tty.then(|| {
        let (docker, id) = (docker.clone(), container_id.to_owned());
        resizer(move |size| {
            let (docker, id) = (docker.clone(), id.clone());
            async move {
                docker.resize_container_tty(&id, ResizeContainerTTYOptions { h: i32::from(size.height), w: i32::from(size.width) }).await
            }
        })
    });
    Ok(StreamSession {
        stdin: options.stdin.then_some(attached.input),
        output: output_stream("attach", container_id, attached.output),
        resize,
        exit: futures::future::ready(Ok(None)).boxed(),
    })
}

/// A sender of terminal sizes whose task applies each with `apply`, in order, until the
/// session drops the sender.
fn resizer<F, Fut>(apply: F) -> mpsc::Sender<TerminalSize>
where
    F: Fn(TerminalSize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), bollard::errors::Error>> + Send,
{
    let (sender, mut sizes) = mpsc::channel::<TerminalSize>(RESIZE_QUEUE);
    tokio::spawn(async move {
        while let Some(size) = sizes.recv().await {
            if let Err(e) = apply(size).await {
                debug!("resizing a terminal to {}x{}: {e}", size.width, size.height);
            }
        }
    });
    sender
}

fn output_stream(
    call: &'static str,
    container_id: &str,
    output: impl futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<StreamOutput, RuntimeError>> {
    let id = container_id.to_owned();
    output
        .filter_map(move |chunk| {
            let chunk = match chunk {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => Some(Ok(StreamOutput::Stdout(message.to_vec()))),
                Ok(LogOutput::StdErr { message }) => Some(Ok(StreamOutput::Stderr(message.to_vec()))),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(map_error(call, &id, e))),
            };
            futures::future::ready(chunk)
        })
        .boxed()
}

pub(crate) async fn port_forward(docker: &Docker, sandbox_id: &str, port: u16) -> Result<Box<dyn Duplex>, RuntimeError> {
    let sandbox = docker
        .inspect_container(sandbox_id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| map_error("port-forward", sandbox_id, e))?;
    let host_network = sandbox.host_config.and_then(|h| h.network_mode).is_some_and(|mode| mode == "host");
    let pid = sandbox.state.and_then(|s| s.pid).filter(|pid| *pid > 0);
    let failed = |e: io::Error| RuntimeError::Call {
        call: "port-forward",
        message: format!("connecting to port {port} in sandbox {sandbox_id}: {e}"),
    };
    if host_network {
        return Ok(Box::new(connect_loopback(port).await.map_err(failed)?));
    }
    let pid = pid.ok_or_else(|| RuntimeError::Call { call: "port-forward", message: format!("sandbox {sandbox_id} is not running") })?;
    Ok(Box::new(connect_in_namespace(pid, port).await.map_err(failed)?))
}

async fn connect_loopback(port: u16) -> io::Result<tokio::net::TcpStream> {
    match tokio::net::TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
        Ok(stream) => Ok(stream),
        Err(v4) => tokio::net::TcpStream::connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await.map_err(|_| v4),
    }
}

/// Connects from inside the network namespace of process `pid`. A thread of its own enters
/// the namespace and ends once connected: the socket stays in the namespace it was made in,
/// and no pooled thread is left behind in a pod's network.
async fn connect_in_namespace(pid: i64, port: u16) -> io::Result<tokio::net::TcpStream> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("port-forward".into()).spawn(move || {
        let _ = sender.send(connect_from_namespace(pid, port));
    })?;
    let stream = receiver.await.map_err(|_| io::Error::other("the thread entering the namespace ended"))??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

fn connect_from_namespace(pid: i64, port: u16) -> io::Result<std::net::TcpStream> {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), CONNECT_TIMEOUT)
        .or_else(|v4| std::net::TcpStream::connect_timeout(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)), CONNECT_TIMEOUT).map_err(|_| v4))
}
