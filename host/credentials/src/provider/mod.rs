//! Credential providers: programs that return short-lived registry credentials for an image,
//! as the kubelet's credential provider plugins do (ECR, Artifact Registry, ACR, in-house
//! token services). [`exec`] runs the kubelet's own executables; WebAssembly providers
//! implement [`Provider`] in the plugin host. Either way, [`Cached`] decides when to ask:
//! only for images its `matchImages` cover, once for concurrent requests of one image (as the
//! kubelet), one call at a time (unlike the kubelet, so that pods of one registry starting
//! together cost one call when the answer covers the registry), and not again while an
//! earlier answer is fresh.

pub mod config;
pub mod exec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use staticlet_runtime::RegistryAuth;
use tokio::time::Instant;

use crate::keyring::location_matches;
use crate::reference;

/// What a provider's answer may be reused for, as the kubelet's `cacheKeyType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeyType {
    /// This image's repository only.
    Image,
    /// Every image of its registry.
    Registry,
    /// Every image the provider matches.
    Global,
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provided {
    /// What the answer may be reused for.
    pub cache_key_type: CacheKeyType,
    /// How long it may be reused; `None` takes the provider's default.
    pub cache_duration: Option<Duration>,
    /// Credentials by registry location (a [`Keyring`](crate::keyring::Keyring) key, globs
    /// allowed).
    pub auth: Vec<(String, RegistryAuth)>,
}

/// Why a provider gave nothing. Never holds a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("credential provider {provider}: {message}")]
pub struct ProviderError {
    /// The provider's name.
    pub provider: String,
    /// What went wrong.
    pub message: String,
}

/// A source of credentials for images.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Its name, for messages.
    fn name(&self) -> &str;

    /// Credentials for images of `repository` (normalized: `docker.io/library/busybox`).
    async fn provide(&self, repository: &str) -> Result<Provided, ProviderError>;
}

/// The cache key of the kubelet's `Global` answers.
const GLOBAL_KEY: &str = "<global>";
/// How often expired answers are swept out.
const PURGE_PERIOD: Duration = Duration::from_secs(15 * 60);

type Asking = Shared<BoxFuture<'static, Result<Vec<(String, RegistryAuth)>, ProviderError>>>;

#[derive(Default)]
struct Cache {
    /// Answers by cache key, with when they expire.
    answers: HashMap<String, (Instant, Vec<(String, RegistryAuth)>)>,
    /// Calls under way, by repository: later requests for it wait on the same call.
    asking: HashMap<String, Asking>,
    last_purge: Option<Instant>,
}

impl Cache {
    /// A fresh answer for `repository`: its image's, its registry's, or the global one.
    fn fresh(&mut self, repository: &str, now: Instant) -> Option<Vec<(String, RegistryAuth)>> {
        if self.last_purge.is_none_or(|at| now >= at + PURGE_PERIOD) {
            self.answers.retain(|_, (expiry, _)| now <= *expiry);
            self.last_purge = Some(now);
        }
        let keys = [repository, reference::registry(repository), GLOBAL_KEY];
        keys.iter().find_map(|key| self.answers.get(*key).filter(|(expiry, _)| now <= *expiry)).map(|(_, auth)| auth.clone())
    }
}

struct Inner {
    provider: Arc<dyn Provider>,
    default_cache_duration: Duration,
    cache: Mutex<Cache>,
    /// One call of the provider at a time: a request waiting for its turn finds the answer
    /// of the call before it when that covers its registry, so pods of one registry that start
    /// together cost one call, not one each.
    turn: tokio::sync::Mutex<()>,
}

/// A provider behind its `matchImages` and the kubelet's cache.
pub struct Cached {
    match_images: Vec<String>,
    shared: Arc<Inner>,
}

impl Cached {
    /// `provider`, asked only for images matching one of `match_images` (registry globs with
    /// optional port and path, as the kubelet's `matchImages`), its answers kept for their
    /// `cacheDuration` or else `default_cache_duration`.
    pub fn new(provider: Arc<dyn Provider>, match_images: Vec<String>, default_cache_duration: Duration) -> Self {
        let shared = Inner { provider, default_cache_duration, cache: Mutex::default(), turn: tokio::sync::Mutex::new(()) };
        Cached { match_images, shared: Arc::new(shared) }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.shared.provider.name()
    }

    /// Whether images of `repository` are this provider's.
    pub fn matches(&self, repository: &str) -> bool {
        self.match_images.iter().any(|glob| location_matches(glob, repository))
    }

    /// The credentials for `repository`, from the cache or from the provider.
    ///
    /// # Errors
    ///
    /// The provider's failure; nothing is cached then.
    pub async fn provide(&self, repository: &str) -> Result<Vec<(String, RegistryAuth)>, ProviderError> {
        let asking = {
            let mut cache = self.shared.cache.lock().expect("credential cache lock");
            if let Some(auth) = cache.fresh(repository, Instant::now()) {
                return Ok(auth);
            }
            let (shared, owned) = (self.shared.clone(), repository.to_owned());
            cache.asking.entry(repository.to_owned()).or_insert_with(|| ask(shared, owned).boxed().shared()).clone()
        };
        let answer = asking.await;
        self.shared.cache.lock().expect("credential cache lock").asking.remove(repository);
        answer
    }
}

/// Waits for the provider's turn, then answers from the cache if the call before covered
/// `repository`, or asks the provider and keeps its answer.
async fn ask(shared: Arc<Inner>, repository: String) -> Result<Vec<(String, RegistryAuth)>, ProviderError> {
    let _turn = shared.turn.lock().await;
    if let Some(auth) = shared.cache.lock().expect("credential cache lock").fresh(&repository, Instant::now()) {
        return Ok(auth);
    }
    let provided = shared.provider.provide(&repository).await?;
    let duration = provided.cache_duration.unwrap_or(shared.default_cache_duration);
    if !duration.is_zero() {
        let key = match provided.cache_key_type {
            CacheKeyType::Image => repository.as_str(),
            CacheKeyType::Registry => reference::registry(&repository),
            CacheKeyType::Global => GLOBAL_KEY,
        };
        let expiry = Instant::now() + duration;
        shared.cache.lock().expect("credential cache lock").answers.insert(key.to_owned(), (expiry, provided.auth.clone()));
    }
    Ok(provided.auth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        calls: AtomicUsize,
        answer: Result<Provided, ProviderError>,
        delay: Duration,
    }

    #[async_trait]
    impl Provider for Counting {
        fn name(&self) -> &str {
            "counting"
        }

        async fn provide(&self, _: &str) -> Result<Provided, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.answer.clone()
        }
    }

    fn provider(key: CacheKeyType, duration: Option<Duration>) -> Arc<Counting> {
        let auth = vec![("*.example.com".to_owned(), RegistryAuth::basic("", "u", "p"))];
        Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: Ok(Provided { cache_key_type: key, cache_duration: duration, auth }),
            delay: Duration::from_secs(1),
        })
    }

    fn behind_cache(p: &Arc<Counting>, default: Duration) -> Cached {
        Cached::new(p.clone(), vec!["*.example.com".into()], default)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_for_one_image_share_one_call() {
        let p = provider(CacheKeyType::Image, Some(Duration::ZERO));
        let cached = behind_cache(&p, Duration::ZERO);
        let (a, b) = tokio::join!(cached.provide("reg.example.com/app"), cached.provide("reg.example.com/app"));
        assert_eq!(a.unwrap(), b.unwrap());
        assert_eq!(p.calls.load(Ordering::SeqCst), 1);
        // Not cached (a zero duration): the next request asks again.
        cached.provide("reg.example.com/app").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn images_of_one_registry_asked_together_cost_one_call() {
        let p = provider(CacheKeyType::Registry, Some(Duration::from_secs(60)));
        let cached = behind_cache(&p, Duration::ZERO);
        let (a, b, c) =
            tokio::join!(cached.provide("reg.example.com/a"), cached.provide("reg.example.com/b"), cached.provide("reg.example.com/c"));
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(p.calls.load(Ordering::SeqCst), 1, "the later ones found the first one's answer");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_are_reused_by_their_key_type_until_they_expire() {
        let p = provider(CacheKeyType::Registry, Some(Duration::from_secs(60)));
        let cached = behind_cache(&p, Duration::ZERO);
        cached.provide("reg.example.com/app").await.unwrap();
        cached.provide("reg.example.com/other").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 1, "one registry, one call");
        cached.provide("two.example.com/app").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 2, "another registry");
        tokio::time::advance(Duration::from_secs(61)).await;
        cached.provide("reg.example.com/app").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 3, "expired");

        let p = provider(CacheKeyType::Image, None);
        let cached = behind_cache(&p, Duration::from_secs(60));
        cached.provide("reg.example.com/app").await.unwrap();
        cached.provide("reg.example.com/app").await.unwrap();
        cached.provide("reg.example.com/other").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 2, "the default duration, per image");

        let p = provider(CacheKeyType::Global, None);
        let cached = behind_cache(&p, Duration::from_secs(60));
        cached.provide("reg.example.com/app").await.unwrap();
        cached.provide("two.example.com/app").await.unwrap();
        assert_eq!(p.calls.load(Ordering::SeqCst), 1, "global");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_not_cached() {
        let p = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            answer: Err(ProviderError { provider: "counting".into(), message: "token endpoint down".into() }),
            delay: Duration::ZERO,
        });
        let cached = Cached::new(p.clone(), vec!["reg.example.com".into()], Duration::from_secs(60));
        assert!(cached.provide("reg.example.com/app").await.is_err());
        assert!(cached.provide("reg.example.com/app").await.is_err());
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
        assert!(cached.matches("reg.example.com/app") && !cached.matches("other.example.com/app"));
    }
}
