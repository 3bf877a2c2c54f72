//! The kubelet's healthz endpoint: `/healthz` with its `ping` and `syncloop` checks, on the
//! API and on a port of its own (`--healthz-port`, 10248 on loopback), which needs no token,
//! as the kubelet's does not.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, info};

use super::{Api, ApiError, Body, text};
use crate::status::SyncLoop;

/// The answer to `/healthz` (`check` empty), `/healthz/ping` or `/healthz/syncloop`, as the
/// kubelet's healthz handlers give it: `ok`, or a 500 naming the failed check (its reason only
/// when the check itself is asked for); `verbose` lists every check.
pub(super) fn answer(check: Option<&str>, verbose: bool, sync_loop: &SyncLoop) -> Response<Body> {
    let checks = [("ping", Ok(())), ("syncloop", sync_loop.check())];
    if let Some(name) = check {
        return match checks.iter().find(|(n, _)| *n == name) {
            Some((_, Ok(()))) => text(StatusCode::OK, "ok"),
            Some((_, Err(why))) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("internal server error: {why}\n")),
            None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
        };
    }
    let healthy = checks.iter().all(|(_, result)| result.is_ok());
    if healthy && !verbose {
        return text(StatusCode::OK, "ok");
    }
    let mut body: String = checks
        .iter()
        .map(|(name, result)| match result {
            Ok(()) => format!("[+]{name} ok\n"),
            Err(_) => format!("[-]{name} failed: reason withheld\n"),
        })
        .collect();
    if healthy {
        body.push_str("healthz check passed\n");
        text(StatusCode::OK, body)
    } else {
        body.push_str("healthz check failed\n");
        text(StatusCode::INTERNAL_SERVER_ERROR, body)
    }
}

/// Serves `/healthz` alone at `address` until the API's shutdown.
///
/// # Errors
///
/// [`ApiError`] when the port cannot be bound.
pub async fn serve_port(address: SocketAddr, api: Arc<Api>) -> Result<(), ApiError> {
    let listener = TcpListener::bind(address).await.map_err(|source| ApiError { listener: address.to_string(), source })?;
    info!(address = %address, "serving healthz");
    loop {
        let stream = tokio::select! {
            _ = api.shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!("accepting a healthz connection: {e}");
                    continue;
                }
            },
        };
        let sync_loop = api.status.sync_loop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let path = request.uri().path().trim_end_matches('/');
                let verbose = request.uri().query().is_some_and(|q| q.split('&').any(|p| p == "verbose" || p.starts_with("verbose=")));
                let response = match path.strip_prefix("/healthz") {
                    Some("") => answer(None, verbose, &sync_loop),
                    Some(check) if check.starts_with('/') => answer(Some(&check[1..]), verbose, &sync_loop),
                    _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                debug!("healthz connection ended: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    async fn read(response: Response<Body>) -> (StatusCode, String) {
        let status = response.status();
        (status, String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_answers_as_the_kubelets_does() {
        let sync_loop = SyncLoop::default();
        assert_eq!(read(answer(None, false, &sync_loop)).await, (StatusCode::OK, "ok".into()));
        assert_eq!(
            read(answer(None, true, &sync_loop)).await,
            (StatusCode::OK, "[+]ping ok\n[+]syncloop ok\nhealthz check passed\n".into())
        );
        assert_eq!(read(answer(Some("nope"), false, &sync_loop)).await.0, StatusCode::NOT_FOUND);

        tokio::time::advance(crate::status::sync_loop::LIMIT + Duration::from_secs(5)).await;
        assert_eq!(
            read(answer(None, false, &sync_loop)).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "[+]ping ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n".into())
        );
        assert_eq!(read(answer(Some("ping"), false, &sync_loop)).await, (StatusCode::OK, "ok".into()));
        let (status, body) = read(answer(Some("syncloop"), false, &sync_loop)).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.starts_with("internal server error: sync loop took longer than expected"), "{body}");
    }
}
