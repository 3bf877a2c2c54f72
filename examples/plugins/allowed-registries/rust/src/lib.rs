//! Allowed registries, in Rust: every container image must come from a registry the settings
//! list (`registries: [registry.internal:5000, ghcr.io/acme]`). See ../README.md.

use staticlet_plugin_sdk::{Context, Pod, Validator, Verdict, container_images, in_registries, log_info, string_list};

struct AllowedRegistries(Vec<String>);

impl Validator for AllowedRegistries {
    fn validate(&self, _ctx: &Context, pod: &Pod) -> Verdict {
        let foreign = container_images(pod).filter(|(_, image)| !in_registries(image, &self.0));
        foreign.map(|(field, image)| (field, format!("image {image} is not from an allowed registry ({})", self.0.join(", ")))).collect()
    }
}

staticlet_plugin_sdk::export_validator!(AllowedRegistries, |config| {
    let registries: Vec<String> = string_list(&config, "registries")?.iter().map(|r| r.trim_end_matches('/').to_owned()).collect();
    log_info(&format!("allowing images from {}", registries.join(", ")));
    Ok(AllowedRegistries(registries))
});
