//! The streaming verbs: `pods/{name}/exec`, `attach` and `portforward`, as the kubelet serves
//! them. The protocols (WebSocket and SPDY) are `staticlet_stream`'s; this module finds the
//! container or sandbox, asks the pod's runtime for a session, and joins the two.

use std::sync::Arc;

use futures::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use staticlet_runtime::{ContainerState, LabelFilter, Runtime, SandboxState, StreamOptions, StreamOutput, StreamSession};
use staticlet_stream::{Outcome, RemoteCommandOptions, RemoteStreams, Tunnel};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Api, Body, bad_request, empty, pick_container, pod_and_runtime, unavailable};
use staticlet_runtime::labels::{CONTAINER_NAME, POD_UID};

/// Which streaming verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// Run a new process in the container.
    Exec,
    /// Join the container's own process.
    Attach,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Exec => "exec",
            Verb::Attach => "attach",
        }
    }
}

/// exec or attach into a container of a pod. `container` is the kubelet path's container, or
/// `None` to take the request's `container` parameter (or the pod's default).
pub(crate) async fn remote_command(
    api: &Api,
    mut request: Request<Incoming>,
    verb: Verb,
    (namespace, name, container): (&str, &str, Option<&str>),
) -> Result<Response<Body>, Box<Response<Body>>> {
    let query: Vec<(String, String)> = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    // kubectl asks the API server for `stdin=true`; the API server asks a kubelet for `input=1`.
    let flag = |keys: [&str; 2]| query.iter().any(|(k, v)| keys.contains(&k.as_str()) && (v == "true" || v == "1"));
    let command: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let options = RemoteCommandOptions {
        stdin: flag(["stdin", "input"]),
        stdout: flag(["stdout", "output"]),
        stderr: flag(["stderr", "error"]),
        tty: flag(["tty", "tty"]),
    };
    if verb == Verb::Exec && command.is_empty() {
        return Err(Box::new(bad_request("you must specify at least one command for the container")));
    }
    if !(options.stdin || options.stdout || options.stderr) {
        return Err(Box::new(bad_request("you must specify at least one of stdin, stdout, stderr")));
    }
    let requested = container.or_else(|| query.iter().find(|(k, _)| k == "container").map(|(_, v)| v.as_str()));
    let (runtime, container_id, container) = running_container(api, namespace, name, requested).await?;
    let what = format!("{} into container {container} of pod {namespace}/{name}", verb.name());
    let session = StreamOptions { stdin: options.stdin, tty: options.tty };
    let upgraded = staticlet_stream::remote_command(&mut request, options, move |streams| async move {
        let started = match verb {
            Verb::Exec => runtime.exec(&container_id, &command, session).await,
            Verb::Attach => runtime.attach(&container_id, session).await,
        };
        match started {
            Ok(session) => join(session, streams, &what).await,
            Err(e) => Outcome::Failed(format!("{what}: {e}")),
        }
    });
    upgraded.map(|response| response.map(|()| empty())).map_err(|rejected| Box::new(bad_request(&rejected.message)))
}

/// port-forward to a pod: each port is reached on the loopback address of the pod's network
/// namespace.
pub(crate) async fn port_forward(
    api: &Api,
    mut request: Request<Incoming>,
    namespace: &str,
    name: &str,
) -> Result<Response<Body>, Box<Response<Body>>> {
    let (stored, runtime) = pod_and_runtime(api, namespace, name)?;
    let pod = &stored.view.pod;
    let sandboxes =
        runtime.list_pod_sandboxes(&LabelFilter::new(POD_UID, pod.uid.clone())).await.map_err(|e| Box::new(unavailable(&e.to_string())))?;
    let sandbox = sandboxes
        .into_iter()
        .filter(|s| s.state == SandboxState::Ready)
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| Box::new(bad_request(&format!("pod {name} has no running sandbox to forward to"))))?;
    let pod_name = format!("{namespace}/{name}");
    let upgraded = staticlet_stream::port_forward(&mut request, move |port| {
        let (runtime, sandbox, pod_name) = (runtime.clone(), sandbox.id.clone(), pod_name.clone());
        async move {
            match runtime.port_forward(&sandbox, port).await {
                Ok(tunnel) => Ok(Box::new(tunnel) as Box<dyn Tunnel>),
                Err(e) => Err(format!("error forwarding port {port} to pod {pod_name}: {e}")),
            }
        }
    });
    upgraded.map(|response| response.map(|()| empty())).map_err(|rejected| Box::new(bad_request(&rejected.message)))
}

/// The runtime and ID of the running instance of a pod's container.
async fn running_container(
    api: &Api,
    namespace: &str,
    name: &str,
    requested: Option<&str>,
) -> Result<(Arc<dyn Runtime>, String, String), Box<Response<Body>>> {
    let (stored, runtime) = pod_and_runtime(api, namespace, name)?;
    let pod = &stored.view.pod;
    let container = pick_container(pod, requested)?;
    let filter = LabelFilter::new(POD_UID, pod.uid.clone()).and(CONTAINER_NAME, container.clone());
    let instances = runtime.list_containers(&filter).await.map_err(|e| Box::new(unavailable(&e.to_string())))?;
    let running = instances.into_iter().filter(|c| c.state == ContainerState::Running).max_by_key(|c| (c.metadata.attempt, c.created_at));
    match running {
        Some(instance) => Ok((runtime, instance.id, container)),
        None => Err(Box::new(bad_request(&format!("container {container} is not valid for pod {name}: it is not running")))),
    }
}

/// Copies the client's streams to the session and back until the process's output ends, then
/// reports how it ended.
async fn join(mut session: StreamSession, streams: RemoteStreams, what: &str) -> Outcome {
    let stdin = match (streams.stdin, session.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            // The process sees end of input when the client closes its stdin.
            let _ = to.shutdown().await;
        })),
        _ => None,
    };
    if let (Some(mut sizes), Some(resize)) = (streams.resize, session.resize.take()) {
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if resize.send(size).await.is_err() {
                    break;
                }
            }
        });
    }
    let (mut stdout, mut stderr) = (streams.stdout, streams.stderr);
    let mut failure = None;
    while let Some(chunk) = session.output.next().await {
        let written = match chunk {
            Ok(StreamOutput::Stdout(bytes)) => write(stdout.as_mut(), &bytes).await,
            Ok(StreamOutput::Stderr(bytes)) => write(stderr.as_mut(), &bytes).await,
            Err(e) => {
                failure = Some(format!("{what}: {e}"));
                break;
            }
        };
        if written.is_err() {
            // The client is gone; the process runs on as a kubelet's does.
            break;
        }
    }
    for writer in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = writer.shutdown().await;
    }
    if let Some(stdin) = stdin {
        stdin.abort();
    }
    if let Some(failure) = failure {
        return Outcome::Failed(failure);
    }
    match session.exit.await {
        Ok(code) => Outcome::Exited(code.unwrap_or(0)),
        Err(e) => Outcome::Failed(format!("{what}: {e}")),
    }
}

async fn write(writer: Option<&mut Box<dyn AsyncWrite + Send + Unpin>>, bytes: &[u8]) -> std::io::Result<()> {
    match writer {
        Some(writer) => {
            writer.write_all(bytes).await?;
            writer.flush().await
        }
        None => Ok(()),
    }
}
