//! The Podman runtime adapter as a component: see `podman-adapter` for what it does and its
//! settings. The logic lives there so that test adapters can wrap it: this crate's only job is
//! the component's exports, which a wrapper must not link a second time.

staticlet_plugin_sdk::export_runtime!(podman_adapter::Podman, |config| podman_adapter::Podman::from_settings(&config));
