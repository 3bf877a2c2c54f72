//! The Podman runtime adapter as a component: see `podman-adapter` for what it does. The logic
//! lives there so that test adapters can wrap it without exporting it twice.

staticlet_runtime_sdk::export_runtime!(podman_adapter::Podman, |config| podman_adapter::Podman::from_settings(&config));
