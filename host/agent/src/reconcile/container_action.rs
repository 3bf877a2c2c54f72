//! The actions probes and lifecycle hooks take — `exec`, `httpGet`, `tcpSocket`, `sleep` —
//! resolved against their container and run the way the kubelet's prober and hook runner run
//! them.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerPort, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use staticlet_runtime::{Runtime, RuntimeError};

/// What the kubelet sends as its user agent on probes; the version is the API release the
/// agent speaks.
const PROBE_USER_AGENT: &str = "kube-probe/1.34";
/// The kubelet follows at most this many redirects.
const MAX_REDIRECTS: usize = 10;

/// A probe or hook action, resolved: named ports looked up, the host filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerAction {
    /// Run a command in the container; exit 0 is success.
    Exec(Vec<String>),
    /// GET a URL; for probes, a status from 200 to 399 is success.
    HttpGet {
        /// The full URL.
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection.
    TcpSocket {
        /// Host to connect to.
        host: String,
        /// Port.
        port: u16,
    },
    /// Wait (a hook only).
    Sleep(Duration),
}

/// Why a probe or hook could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// A named port that the container does not declare.
    #[error("port {0:?} is not one of the container's named ports")]
    UnknownPort(String),
    /// A port outside 1..=65535.
    #[error("port {0} is out of range")]
    BadPort(i32),
    /// A probe or hook with no action set, or one staticlet does not run.
    #[error("{0}")]
    Unsupported(String),
}

/// The probe's action, with `pod_ip` as the default host.
///
/// # Errors
///
/// [`ActionError`] for a port the container does not declare, or a `grpc` probe.
pub fn from_probe(probe: &Probe, container: &Container, pod_ip: &str) -> Result<ContainerAction, ActionError> {
    if probe.grpc.is_some() {
        return Err(ActionError::Unsupported("grpc probes are not supported yet; use exec, httpGet or tcpSocket".into()));
    }
    resolve(probe.exec.as_ref(), probe.http_get.as_ref(), probe.tcp_socket.as_ref(), None, container.ports.as_deref(), pod_ip)
}

/// The hook's action, with `pod_ip` as the default host; `ports` are the container's.
///
/// # Errors
///
/// [`ActionError`] for a port the container does not declare or a hook with no action.
pub fn from_hook(hook: &LifecycleHandler, ports: Option<&[ContainerPort]>, pod_ip: &str) -> Result<ContainerAction, ActionError> {
    let sleep = hook.sleep.as_ref().map(|s| Duration::from_secs(s.seconds.max(0) as u64));
    resolve(hook.exec.as_ref(), hook.http_get.as_ref(), hook.tcp_socket.as_ref(), sleep, ports, pod_ip)
}

fn resolve(
    exec: Option<&ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    sleep: Option<Duration>,
    ports: Option<&[ContainerPort]>,
    pod_ip: &str,
) -> Result<ContainerAction, ActionError> {
    if let Some(exec) = exec {
        return Ok(ContainerAction::Exec(exec.command.clone().unwrap_or_default()));
    }
    if let Some(http) = http {
        let host = http.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
        let port = port(&http.port, ports)?;
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let mut path = http.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let host = match host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
            _ => host,
        };
        let headers = http.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
        return Ok(ContainerAction::HttpGet { url: format!("{scheme}://{host}:{port}{path}"), headers });
    }
    if let Some(tcp) = tcp {
        let host = tcp.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_owned());
        return Ok(ContainerAction::TcpSocket { host, port: port(&tcp.port, ports)? });
    }
    if let Some(duration) = sleep {
        return Ok(ContainerAction::Sleep(duration));
    }
    Err(ActionError::Unsupported("the hook sets no action (exec, httpGet, tcpSocket or sleep)".into()))
}

/// A number, or the name of one of the container's ports (or a number written as a string).
fn port(port: &IntOrString, ports: Option<&[ContainerPort]>) -> Result<u16, ActionError> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => match ports.into_iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str())) {
            Some(p) => p.container_port,
            None => name.parse().map_err(|_| ActionError::UnknownPort(name.clone()))?,
        },
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or(ActionError::BadPort(number))
}

/// Runs probe and hook actions; one per worker, sharing an HTTP client.
#[derive(Clone)]
pub struct Runner {
    probe_client: reqwest::Client,
    hook_client: reqwest::Client,
}

impl Default for Runner {
    fn default() -> Self {
        Runner { probe_client: http_client(true), hook_client: http_client(false) }
    }
}

/// Probes, like the kubelet's, skip TLS verification (a pod's certificate is rarely one the node
/// trusts) and follow redirects only to the same host; a redirect elsewhere counts as success.
fn http_client(probe: bool) -> reqwest::Client {
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let same_host = attempt.previous().first().is_some_and(|first| first.host_str() == attempt.url().host_str());
        if attempt.previous().len() >= MAX_REDIRECTS || (probe && !same_host) { attempt.stop() } else { attempt.follow() }
    });
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(policy)
        .user_agent(PROBE_USER_AGENT)
        .no_proxy()
        .build()
        .expect("a client with these settings always builds")
}

/// How a run ended: `Ok` with what the action printed or answered, `Err` with why it failed.
pub type Outcome = Result<String, String>;

impl Runner {
    /// Runs a probe's action with its timeout. HTTP answers outside 200..=399 fail.
    pub async fn probe(&self, action: &ContainerAction, runtime: &dyn Runtime, container_id: &str, timeout: Duration) -> Outcome {
        self.run(action, runtime, container_id, timeout, true).await
    }

    /// Runs a hook's action within `timeout`. Only a failure to run it, or a non-zero exit,
    /// fails; HTTP status codes do not, as with the kubelet.
    pub async fn hook(&self, action: &ContainerAction, runtime: &dyn Runtime, container_id: &str, timeout: Duration) -> Outcome {
        self.run(action, runtime, container_id, timeout, false).await
    }

    async fn run(&self, action: &ContainerAction, runtime: &dyn Runtime, container_id: &str, timeout: Duration, probe: bool) -> Outcome {
        match action {
            ContainerAction::Exec(command) => match runtime.exec_sync(container_id, command, timeout).await {
                Ok(result) => {
                    let mut output = String::from_utf8_lossy(&result.stdout).into_owned();
                    output.push_str(&String::from_utf8_lossy(&result.stderr));
                    if result.exit_code == 0 {
                        Ok(output)
                    } else {
                        Err(format!("command {command:?} exited with {}: {}", result.exit_code, output.trim_end()))
                    }
                }
                Err(RuntimeError::DeadlineExceeded { after, .. }) => Err(format!("command {command:?} timed out after {after:?}")),
                Err(e) => Err(format!("command {command:?}: {e}")),
            },
            ContainerAction::HttpGet { url, headers } => {
                let client = if probe { &self.probe_client } else { &self.hook_client };
                let mut request = client.get(url).timeout(timeout).header(reqwest::header::ACCEPT, "*/*");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                match request.send().await {
                    Ok(response) => {
                        let code = response.status();
                        if !probe || (200..400).contains(&code.as_u16()) {
                            Ok(format!("HTTP probe succeeded with status code {}", code.as_u16()))
                        } else {
                            Err(format!("HTTP probe failed with statuscode: {}", code.as_u16()))
                        }
                    }
                    Err(e) if e.is_timeout() => {
                        Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
                    }
                    Err(e) => Err(format!("Get \"{url}\": {}", crate::error_chain(&e))),
                }
            }
            ContainerAction::TcpSocket { host, port } => {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), *port))).await {
                    Ok(Ok(_)) => Ok(String::new()),
                    Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {e}")),
                    Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
                }
            }
            ContainerAction::Sleep(duration) => {
                tokio::time::sleep((*duration).min(timeout)).await;
                Ok(String::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn named_ports_and_default_hosts_resolve() {
        let c = container(serde_json::json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}));
        let probe: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"port": "http", "path": "healthz"}})).unwrap();
        assert_eq!(
            from_probe(&probe, &c, "172.17.0.2").unwrap(),
            ContainerAction::HttpGet { url: "http://172.17.0.2:8080/healthz".into(), headers: vec![] }
        );
        let tcp: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": 53, "host": "::1"}})).unwrap();
        assert_eq!(from_probe(&tcp, &c, "x").unwrap(), ContainerAction::TcpSocket { host: "::1".into(), port: 53 });
        let v6: Probe = serde_json::from_value(serde_json::json!({"httpGet": {"port": 80, "scheme": "HTTPS"}})).unwrap();
        assert_eq!(
            from_probe(&v6, &c, "fd00::2").unwrap(),
            ContainerAction::HttpGet { url: "https://[fd00::2]:80/".into(), headers: vec![] }
        );
        let unknown: Probe = serde_json::from_value(serde_json::json!({"tcpSocket": {"port": "metrics"}})).unwrap();
        assert_eq!(from_probe(&unknown, &c, "x"), Err(ActionError::UnknownPort("metrics".into())));
        let grpc: Probe = serde_json::from_value(serde_json::json!({"grpc": {"port": 9000}})).unwrap();
        assert!(matches!(from_probe(&grpc, &c, "x"), Err(ActionError::Unsupported(_))));
    }

    #[test]
    fn hooks_take_sleep() {
        let hook: LifecycleHandler = serde_json::from_value(serde_json::json!({"sleep": {"seconds": 5}})).unwrap();
        assert_eq!(from_hook(&hook, None, "x").unwrap(), ContainerAction::Sleep(Duration::from_secs(5)));
        assert!(from_hook(&LifecycleHandler::default(), None, "x").is_err());
    }
}
