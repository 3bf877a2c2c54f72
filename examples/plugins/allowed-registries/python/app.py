"""Allowed registries, in Python: every container image must come from a registry the settings
list (`registries: [registry.internal:5000, ghcr.io/acme]`). See ../README.md."""

# componentize-py looks the world's classes (WitWorld, Validator) up in this module.
from staticlet_sdk import Validator, WitWorld, container_images, in_registries, log_info, policy, string_list  # noqa: F401


@policy
def allowed_registries(settings):
    registries = [r.rstrip("/") for r in string_list(settings, "registries")]
    log_info("allowing images from " + ", ".join(registries))

    def check(ctx, pod):
        for field, image in container_images(pod):
            if not in_registries(image, registries):
                yield field, f"image {image} is not from an allowed registry ({', '.join(registries)})"

    return check
