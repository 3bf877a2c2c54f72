//! The kubelet port (`--port`, 10250): what a cluster's API server proxies to a node, over
//! TLS, for `kubectl logs`, `exec`, `attach` and `port-forward` on this node's mirror pods:
//! `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`, `/attach/...`, `/portForward/...`,
//! `/pods` and `/healthz`; and the local API besides, for kubectl with the kubeconfig of
//! `staticlet kubeconfig`. Every request is authenticated and authorized by [`auth::Gate`].

pub mod auth;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};

use self::auth::{Attributes, Gate, Refusal, User};
use super::stream::{self, Verb};
use super::{Access, Api, ApiError, Body, Query, status};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the kubelet port at `address` with `tls` until the API's shutdown.
///
/// # Errors
///
/// [`ApiError`] when the port cannot be bound.
pub async fn serve(address: SocketAddr, tls: Arc<rustls::ServerConfig>, gate: Gate, api: Arc<Api>) -> Result<(), ApiError> {
    let listener = TcpListener::bind(address).await.map_err(|source| ApiError { listener: address.to_string(), source })?;
    info!(address = %address, "serving the kubelet port over TLS");
    let (acceptor, gate) = (TlsAcceptor::from(tls), Arc::new(gate));
    loop {
        tokio::select! {
            _ = api.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer, acceptor.clone(), gate.clone(), api.clone()));
                }
                Err(e) => debug!("accepting a kubelet-port connection: {e}"),
            },
        }
    }
    Ok(())
}

async fn connection(stream: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, gate: Arc<Gate>, api: Arc<Api>) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return debug!(%peer, "TLS handshake on the kubelet port: {e}"),
        Err(_) => return debug!(%peer, "TLS handshake on the kubelet port timed out"),
    };
    let user: Option<User> = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(tls::user_of);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let (gate, api, user) = (gate.clone(), api.clone(), user.clone());
        async move {
            let attributes = Attributes::of(request.method(), request.uri().path());
            let response = match gate.check(request.headers(), user.as_ref(), &attributes).await {
                Ok(identity) => {
                    debug!(?identity, path = request.uri().path(), "kubelet-port request");
                    route(request, &api).await
                }
                Err(Refusal::Unauthorized) => status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", None),
                Err(Refusal::Forbidden(message)) => status(StatusCode::FORBIDDEN, "Forbidden", &message, None),
            };
            Ok::<_, Infallible>(response)
        }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).with_upgrades().await {
        debug!(%peer, "kubelet-port connection ended: {e}");
    }
}

async fn route(request: Request<Incoming>, api: &Api) -> Response<Body> {
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();
    let streaming = method == Method::GET || method == Method::POST;
    let result = match segments[..] {
        ["exec", namespace, pod, container] | ["exec", namespace, pod, _, container] if streaming => {
            stream::remote_command(api, request, Verb::Exec, (namespace, pod, Some(container))).await
        }
        ["attach", namespace, pod, container] | ["attach", namespace, pod, _, container] if streaming => {
            stream::remote_command(api, request, Verb::Attach, (namespace, pod, Some(container))).await
        }
        ["portForward", namespace, pod] | ["portForward", namespace, pod, _] if streaming => {
            stream::port_forward(api, request, namespace, pod).await
        }
        ["containerLogs", namespace, pod, container] if method == Method::GET => {
            let mut query = Query::of(&request);
            query.params.insert("container".into(), container.to_owned());
            super::logs::serve(api, namespace, pod, &query).await
        }
        // The rest is the local API, so that kubectl (which sends a token over TLS only) can
        // use it here with the kubeconfig `staticlet kubeconfig` prints.
        _ => Ok(super::route(request, api, Access::KubeletPort).await),
    };
    result.unwrap_or_else(|response| *response)
}
