//! The runtimes pods run on, and which pod runs on which.
//!
//! A pod picks a *runtime class* with `spec.runtimeClassName` (none: the default class); the
//! agent config maps each class to a *handler*, the CRI's word for it: a built-in runtime
//! (`docker`, `cri`) or a runtime-adapter plugin. Several classes may share a handler. Everything
//! below this map sees only the [`Runtime`] trait: a handler is relisted, its pods are
//! reconciled and its logs are read the same way whatever implements it.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use staticlet_cri::CriRuntime;
use staticlet_docker::{DockerConfig, DockerRuntime};
use staticlet_plugin::{AdapterRuntime, Plugin, PluginEngine};
use staticlet_runtime::Runtime;
use staticlet_runtime::handler::CRI;

use crate::config::Config;

/// The runtime classes and their handlers. Cloning shares the runtimes.
#[derive(Clone)]
pub struct Runtimes {
    default_class: String,
    /// Class name → handler name.
    classes: BTreeMap<String, String>,
    /// Handler name → runtime.
    handlers: BTreeMap<String, Arc<dyn Runtime>>,
}

impl std::fmt::Debug for Runtimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtimes").field("default_class", &self.default_class).field("classes", &self.classes).finish_non_exhaustive()
    }
}

impl Runtimes {
    /// The runtimes `config`'s classes name, each built once: Docker if a class names it, and
    /// each runtime adapter a class names, loaded into `engine`. The adapter plugins come back
    /// too, to be listed and reloaded; one that fails to load is kept, and its pods' calls fail
    /// with the reason until its file is fixed.
    pub async fn from_config(config: &Config, engine: &PluginEngine) -> (Runtimes, Vec<Arc<Plugin>>) {
        let mut handlers: BTreeMap<String, Arc<dyn Runtime>> = BTreeMap::new();
        let mut plugins = Vec::new();
        for handler in config.runtime_classes.values() {
            if handlers.contains_key(handler) {
                continue;
            }
            let runtime: Arc<dyn Runtime> = match config.runtime_adapters.iter().find(|a| &a.spec.name == handler) {
                Some(adapter) => {
                    let plugin = Arc::new(Plugin::load(engine, adapter.spec.clone()).await);
                    plugins.push(plugin.clone());
                    Arc::new(AdapterRuntime::new(plugin, adapter.image_pull_timeout))
                }
                None if handler == CRI => Arc::new(CriRuntime::new(config.cri_socket.clone())),
                None => Arc::new(DockerRuntime::new(DockerConfig {
                    endpoint: config.docker_endpoint.clone(),
                    pod_infra_image: config.pod_infra_container_image.clone(),
                })),
            };
            handlers.insert(handler.clone(), runtime);
        }
        (Runtimes::new(config.default_runtime_class.clone(), config.runtime_classes.clone(), handlers), plugins)
    }

    /// One runtime, the handler and only class `name`, which is the default.
    pub fn single(name: &str, runtime: Arc<dyn Runtime>) -> Self {
        Runtimes {
            default_class: name.to_owned(),
            classes: BTreeMap::from([(name.to_owned(), name.to_owned())]),
            handlers: BTreeMap::from([(name.to_owned(), runtime)]),
        }
    }

    /// Classes mapped to handlers, `default_class` among them.
    ///
    /// # Panics
    ///
    /// When a class names a handler that is not given, or the default class is not a class:
    /// the config checks both before runtimes are built.
    pub fn new(default_class: String, classes: BTreeMap<String, String>, handlers: BTreeMap<String, Arc<dyn Runtime>>) -> Self {
        assert!(classes.contains_key(&default_class), "the default runtime class {default_class} is a class");
        assert!(classes.values().all(|h| handlers.contains_key(h)), "every runtime class has its handler");
        Runtimes { default_class, classes, handlers }
    }

    /// The class `pod` asks for: its `runtimeClassName`, or the default.
    pub fn class_of<'a>(&'a self, pod: &'a Pod) -> &'a str {
        pod.spec.as_ref().and_then(|s| s.runtime_class_name.as_deref()).unwrap_or(&self.default_class)
    }

    /// The handler that runs `pod`, or `None` when its class is unknown.
    pub fn handler_of(&self, pod: &Pod) -> Option<&str> {
        self.classes.get(self.class_of(pod)).map(String::as_str)
    }

    /// The runtime of a handler.
    pub fn handler(&self, name: &str) -> Option<&Arc<dyn Runtime>> {
        self.handlers.get(name)
    }

    /// The runtime that runs `pod`, or `None` when its class is unknown.
    pub fn for_pod(&self, pod: &Pod) -> Option<&Arc<dyn Runtime>> {
        self.handler_of(pod).and_then(|h| self.handlers.get(h))
    }

    /// The runtime of the default class.
    pub fn default_runtime(&self) -> &Arc<dyn Runtime> {
        &self.handlers[&self.classes[&self.default_class]]
    }

    /// Every class name, sorted.
    pub fn class_names(&self) -> Vec<String> {
        self.classes.keys().cloned().collect()
    }

    /// Every handler and its runtime, each once.
    pub fn handlers(&self) -> impl Iterator<Item = (&str, &Arc<dyn Runtime>)> {
        self.handlers.iter().map(|(name, runtime)| (name.as_str(), runtime))
    }

    /// The same classes, each runtime wrapped by `wrap` (to measure its calls).
    #[must_use]
    pub fn map(self, mut wrap: impl FnMut(Arc<dyn Runtime>) -> Arc<dyn Runtime>) -> Self {
        let handlers = self.handlers.into_iter().map(|(name, runtime)| (name, wrap(runtime))).collect();
        Runtimes { handlers, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use staticlet_runtime::FakeRuntime;

    fn pod(class: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": {"containers": [], "runtimeClassName": class}})).unwrap()
    }

    #[test]
    fn a_pod_runs_on_its_class_or_the_default_and_classes_may_share_a_handler() {
        let classes = BTreeMap::from([
            ("docker".to_owned(), "docker".to_owned()),
            ("podman".to_owned(), "podman".to_owned()),
            ("fast".to_owned(), "podman".to_owned()),
        ]);
        let handlers: BTreeMap<String, Arc<dyn Runtime>> =
            [("docker", FakeRuntime::default()), ("podman", FakeRuntime::default())].map(|(n, r)| (n.to_owned(), Arc::new(r) as _)).into();
        let runtimes = Runtimes::new("docker".into(), classes, handlers);
        assert_eq!(runtimes.handler_of(&pod(None)), Some("docker"));
        assert_eq!(runtimes.handler_of(&pod(Some("fast"))), Some("podman"));
        assert_eq!(runtimes.handler_of(&pod(Some("gvisor"))), None);
        assert_eq!(runtimes.class_names(), ["docker", "fast", "podman"]);
        assert_eq!(runtimes.handlers().count(), 2);
    }
}
