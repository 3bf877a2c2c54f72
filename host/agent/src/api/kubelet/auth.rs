//! Who a request on the kubelet port comes from, and whether they may do what it asks, as the
//! kubelet decides it: a client certificate of the client CA or a bearer token (the agent's
//! own, or one the API server vouches for through TokenReview), then AlwaysAllow or a
//! SubjectAccessReview on the node's subresource.

use std::collections::BTreeMap;

use hyper::{HeaderMap, Method};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;

use crate::api::credential::{Credential, bearer};
use crate::config::AuthorizationMode;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (a certificate's CommonName, a TokenReview's username).
    pub name: String,
    /// Their groups.
    pub groups: Vec<String>,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The holder of the agent's own token: its owner, allowed everything.
    Owner,
    /// A user the client CA or the API server vouches for.
    User(User),
}

/// What a request does, in the terms of a SubjectAccessReview on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `create`, ...
    pub verb: &'static str,
    /// The node's subresource: `proxy` for exec, attach, port-forward, pods and container
    /// logs, as the kubelet names them.
    pub subresource: &'static str,
}

impl Attributes {
    /// The kubelet's mapping of a request. The streaming verbs are `create` whatever the HTTP
    /// method: a WebSocket upgrade is a GET, and `get` on nodes/proxy must not be enough to run
    /// a command.
    pub fn of(method: &Method, path: &str) -> Attributes {
        let streaming = ["/exec/", "/attach/", "/portForward/", "/run/"].iter().any(|prefix| path.starts_with(prefix));
        let verb = if streaming {
            "create"
        } else {
            match *method {
                Method::POST => "create",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "get",
            }
        };
        let subresource = match path.split('/').nth(1) {
            Some("stats") => "stats",
            Some("metrics") => "metrics",
            Some("logs") => "log",
            Some("spec") => "spec",
            _ => "proxy",
        };
        Attributes { verb, subresource }
    }
}

/// Why a request was refused: 401 (who?) or 403 (not allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credential, or one nobody vouches for.
    Unauthorized,
    /// Known, but not allowed; the message says what was missing.
    Forbidden(String),
}

/// The kubelet port's authentication and authorization.
#[derive(Clone)]
pub struct Gate {
    credential: Credential,
    /// The API server, for TokenReview (when enabled) and SubjectAccessReview.
    api_server: Option<kube::Client>,
    token_webhook: bool,
    mode: AuthorizationMode,
    node: String,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("token_webhook", &self.token_webhook)
            .field("mode", &self.mode)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for `node`.
    pub fn new(
        credential: Credential,
        api_server: Option<kube::Client>,
        token_webhook: bool,
        mode: AuthorizationMode,
        node: String,
    ) -> Gate {
        Gate { credential, api_server, token_webhook, mode, node }
    }

    /// Authenticates, then authorizes, one request.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] to answer with.
    pub async fn check(&self, headers: &HeaderMap, certificate_user: Option<&User>, attributes: &Attributes) -> Result<Identity, Refusal> {
        let identity = self.authenticate(headers, certificate_user).await?;
        self.authorize(&identity, attributes).await?;
        Ok(identity)
    }

    async fn authenticate(&self, headers: &HeaderMap, certificate_user: Option<&User>) -> Result<Identity, Refusal> {
        if let Some(user) = certificate_user {
            return Ok(Identity::User(user.clone()));
        }
        if self.credential.accepts(headers) {
            return Ok(Identity::Owner);
        }
        match (bearer(headers), &self.api_server) {
            (Some(token), Some(client)) if self.token_webhook => token_review(client, token).await.map(Identity::User),
            _ => Err(Refusal::Unauthorized),
        }
    }

    async fn authorize(&self, identity: &Identity, attributes: &Attributes) -> Result<(), Refusal> {
        let Identity::User(user) = identity else { return Ok(()) };
        match (self.mode, &self.api_server) {
            (AuthorizationMode::AlwaysAllow, _) => Ok(()),
            (AuthorizationMode::Webhook, None) => {
                Err(Refusal::Forbidden("authorization mode Webhook needs the API server (--kubeconfig)".into()))
            }
            (AuthorizationMode::Webhook, Some(client)) => subject_access_review(client, user, attributes, &self.node).await,
        }
    }
}

async fn token_review(client: &kube::Client, token: &str) -> Result<User, Refusal> {
    let review =
        TokenReview { spec: TokenReviewSpec { token: Some(token.to_owned()), ..TokenReviewSpec::default() }, ..TokenReview::default() };
    let answer = kube::Api::<TokenReview>::all(client.clone()).create(&PostParams::default(), &review).await.map_err(|e| {
        tracing::warn!("TokenReview failed: {e}");
        Refusal::Unauthorized
    })?;
    let status = answer.status.unwrap_or_default();
    match (status.authenticated, status.user) {
        (Some(true), Some(user)) => Ok(User { name: user.username.unwrap_or_default(), groups: user.groups.unwrap_or_default() }),
        _ => Err(Refusal::Unauthorized),
    }
}

async fn subject_access_review(client: &kube::Client, user: &User, attributes: &Attributes, node: &str) -> Result<(), Refusal> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            groups: Some(user.groups.clone()),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(attributes.verb.into()),
                resource: Some("nodes".into()),
                subresource: Some(attributes.subresource.into()),
                name: Some(node.to_owned()),
                ..ResourceAttributes::default()
            }),
            extra: Some(BTreeMap::new()),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let denied =
        || format!("User \"{}\" cannot {} resource \"nodes/{}\" of node \"{node}\"", user.name, attributes.verb, attributes.subresource);
    let answer = kube::Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await.map_err(|e| {
        tracing::warn!("SubjectAccessReview failed: {e}");
        Refusal::Forbidden(format!("{} (the authorization check failed)", denied()))
    })?;
    match answer.status {
        Some(status) if status.allowed => Ok(()),
        _ => Err(Refusal::Forbidden(denied())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_node_subresources_as_the_kubelet_maps_them() {
        assert_eq!(Attributes::of(&Method::GET, "/exec/ns/pod/c"), Attributes { verb: "create", subresource: "proxy" });
        assert_eq!(Attributes::of(&Method::POST, "/portForward/ns/pod"), Attributes { verb: "create", subresource: "proxy" });
        assert_eq!(Attributes::of(&Method::GET, "/containerLogs/ns/pod/c"), Attributes { verb: "get", subresource: "proxy" });
        assert_eq!(Attributes::of(&Method::GET, "/pods"), Attributes { verb: "get", subresource: "proxy" });
        assert_eq!(Attributes::of(&Method::GET, "/metrics"), Attributes { verb: "get", subresource: "metrics" });
        assert_eq!(Attributes::of(&Method::GET, "/logs/syslog"), Attributes { verb: "get", subresource: "log" });
    }
}
