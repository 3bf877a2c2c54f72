//! Choosing the transport and subprotocol from an upgrade request's headers, and the 101 answer.
//!
//! SPDY clients list their versions in repeated (or comma-joined) `X-Stream-Protocol-Version`
//! headers, WebSocket clients in `Sec-WebSocket-Protocol`; as in apimachinery's `Handshake` and
//! wsstream's handshake, the first protocol in the client's order that this side speaks wins.

use http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE};
use http::{HeaderMap, HeaderName, Response, StatusCode};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::Rejected;

/// The SPDY header listing the client's stream protocol versions.
pub const X_STREAM_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("x-stream-protocol-version");

/// The upgrade token for SPDY.
pub const SPDY_31: &str = "SPDY/3.1";

/// The protocols one endpoint speaks, per transport, in no particular order.
pub struct Offer {
    /// What the endpoint is called in error messages.
    pub what: &'static str,
    /// `X-Stream-Protocol-Version` values.
    pub spdy: &'static [&'static str],
    /// `Sec-WebSocket-Protocol` values.
    pub websocket: &'static [&'static str],
}

/// The transport and protocol agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreed {
    /// SPDY/3.1 with this stream protocol.
    Spdy(&'static str),
    /// WebSocket with this subprotocol ("" when the client asked for none).
    WebSocket {
        /// The subprotocol.
        protocol: &'static str,
        /// The Sec-WebSocket-Accept value.
        accept: String,
    },
}

impl Agreed {
    /// The 101 Switching Protocols answer.
    pub fn response(&self) -> Response<()> {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(CONNECTION, http::HeaderValue::from_static("Upgrade"));
        match self {
            Agreed::Spdy(protocol) => {
                headers.insert(UPGRADE, http::HeaderValue::from_static(SPDY_31));
                headers.insert(X_STREAM_PROTOCOL_VERSION, http::HeaderValue::from_static(protocol));
            }
            Agreed::WebSocket { protocol, accept } => {
                headers.insert(UPGRADE, http::HeaderValue::from_static("websocket"));
                if let Ok(accept) = http::HeaderValue::from_str(accept) {
                    headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
                }
                if !protocol.is_empty() {
                    headers.insert(SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(protocol));
                }
            }
        }
        response
    }
}

/// Every comma-separated token of every value of `name`, trimmed.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

fn first_common(client: impl Iterator<Item = impl AsRef<str>>, server: &[&'static str]) -> Option<&'static str> {
    client.into_iter().find_map(|offered| server.iter().copied().find(|ours| *ours == offered.as_ref()))
}

fn rejected(message: String) -> Rejected {
    Rejected { status: StatusCode::BAD_REQUEST, message }
}

impl Offer {
    fn describe(&self) -> String {
        let websocket = self.websocket.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(", ");
        format!("SPDY/3.1 (X-Stream-Protocol-Version: {}) or WebSocket (Sec-WebSocket-Protocol: {websocket})", self.spdy.join(", "))
    }

    /// Picks the transport and protocol for a request, or says why it cannot be upgraded.
    pub fn negotiate(&self, headers: &HeaderMap) -> Result<Agreed, Rejected> {
        // Like apimachinery's IsUpgradeRequest: "upgrade" anywhere in Connection.
        let upgrade = headers.get_all(CONNECTION).iter().any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("upgrade")));
        if !upgrade {
            return Err(rejected(format!("unable to upgrade: {} needs a connection upgrade to {}", self.what, self.describe())));
        }
        if has_token(headers, &UPGRADE, "websocket") {
            return self.websocket(headers);
        }
        if has_token(headers, &UPGRADE, SPDY_31) {
            let offered: Vec<&str> = tokens(headers, &X_STREAM_PROTOCOL_VERSION).collect();
            if offered.is_empty() {
                return Err(rejected(format!(
                    "unable to upgrade: X-Stream-Protocol-Version is required; {} speaks {}",
                    self.what,
                    self.spdy.join(", ")
                )));
            }
            return first_common(offered.iter(), self.spdy).map(Agreed::Spdy).ok_or_else(|| {
                rejected(format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, {} speaks {}",
                    self.what,
                    self.spdy.join(", ")
                ))
            });
        }
        Err(rejected(format!("unable to upgrade: unsupported Upgrade header; {} speaks {}", self.what, self.describe())))
    }

    fn websocket(&self, headers: &HeaderMap) -> Result<Agreed, Rejected> {
        if !has_token(headers, &SEC_WEBSOCKET_VERSION, "13") {
            return Err(rejected("unable to upgrade: only WebSocket version 13 is supported".to_owned()));
        }
        let Some(key) = headers.get(SEC_WEBSOCKET_KEY) else {
            return Err(rejected("unable to upgrade: Sec-WebSocket-Key is missing".to_owned()));
        };
        let accept = derive_accept_key(key.as_bytes());
        let offered: Vec<&str> = tokens(headers, &SEC_WEBSOCKET_PROTOCOL).collect();
        // No subprotocol at all is the original channel protocol, which the kubelet accepts.
        let wanted: Vec<&str> = if offered.is_empty() { vec![""] } else { offered.clone() };
        match first_common(wanted.iter(), self.websocket) {
            Some(protocol) => Ok(Agreed::WebSocket { protocol, accept }),
            None => Err(rejected(format!(
                "unable to upgrade: requested WebSocket protocols {offered:?} are not supported; {} speaks {}",
                self.what,
                self.websocket.iter().filter(|p| !p.is_empty()).copied().collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}
