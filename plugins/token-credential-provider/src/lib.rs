//! A credential provider that trades a static node token at a token endpoint for a short-lived
//! registry login: the pattern of ECR's, GCR's and most in-house providers, as a sandboxed
//! component that can reach only the token endpoint its grants name. See the README.

use serde::Deserialize;
use staticlet_plugin_sdk::Config;
use staticlet_plugin_sdk::credentials::{Auth, CacheKeyType, CredentialProvider, Credentials};
use staticlet_plugin_sdk::http::Request;

/// The plugin's settings.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Settings {
    /// Where to trade the token: `POST` with `Authorization: Bearer <token>`.
    token_url: String,
    /// The node's token.
    token: String,
}

/// The token endpoint's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Login {
    username: String,
    password: String,
    /// How long the login is good for; the agent reuses it for that long.
    expires_in_seconds: Option<u64>,
}

struct TokenProvider {
    settings: Settings,
}

impl CredentialProvider for TokenProvider {
    fn provide(&self, image: &str) -> Result<Credentials, String> {
        let registry = image.split('/').next().unwrap_or(image).to_owned();
        let answer = Request::post(&self.settings.token_url)
            .header("Authorization", &format!("Bearer {}", self.settings.token))
            .json(&serde_json::json!({"registry": registry, "image": image}))
            .send()
            .map_err(|e| format!("token endpoint {}: {e}", self.settings.token_url))?;
        if !answer.is_success() {
            // The endpoint's status only: its body might echo what it was sent.
            return Err(format!("token endpoint {} answered {}", self.settings.token_url, answer.status));
        }
        let login: Login = serde_json::from_slice(&answer.body)
            .map_err(|_| format!("token endpoint {} answered something that is not a login", self.settings.token_url))?;
        Ok(Credentials {
            cache_key_type: CacheKeyType::Registry,
            cache_duration_ms: login.expires_in_seconds.map(|s| s * 1000),
            auths: vec![Auth { location: registry, username: login.username, password: login.password }],
        })
    }
}

fn build(config: Config) -> Result<TokenProvider, String> {
    let settings: Settings = serde_json::from_value(config).map_err(|e| format!("settings: {e} (expected tokenUrl and token)"))?;
    Ok(TokenProvider { settings })
}

staticlet_plugin_sdk::export_credential_provider!(TokenProvider, build);
