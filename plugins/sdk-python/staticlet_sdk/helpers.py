"""The parts of the SDK that need no component: errors, settings and image helpers.

They import nothing componentize-py generates, so that they can be tested with plain Python
(`python3 -m unittest discover -s plugins/sdk-python/tests`).
"""

from typing import Iterator

# Every kind of container a pod has, in the order the agent reports them.
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")


class PluginError(Exception):
    """A failure to do the job (not a verdict), reported to the agent with its `code`: the agent
    logs it with the plugin's name and shows it in the status of the pods it concerns."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConfigError(PluginError):
    """Settings the policy cannot work with: the agent refuses to load the plugin."""

    def __init__(self, message: str):
        super().__init__("config", message)


def string_list(settings: dict, key: str) -> list[str]:
    """The setting `key`: a non-empty list of non-empty strings, or a `ConfigError` naming it."""
    value = settings.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"settings need `{key}`: a non-empty list of strings")
    return value


def container_images(pod: dict) -> Iterator[tuple[str, str]]:
    """Every container's image (init, app and ephemeral containers) with its field path,
    `("spec.containers[1].image", "busybox")`; an absent image is `""`."""
    spec = pod.get("spec") or {}
    for kind in CONTAINER_KINDS:
        for i, container in enumerate(spec.get(kind) or []):
            yield f"spec.{kind}[{i}].image", container.get("image") or ""


def normalize_image(image: str) -> str:
    """The image with its registry host made explicit, as a container runtime reads it: a first
    path segment with a `.` or a `:`, or `localhost`, is a registry host, and an image without one
    is Docker Hub's (`busybox` is `docker.io/busybox`)."""
    host, _, rest = image.partition("/")
    if rest and ("." in host or ":" in host or host == "localhost"):
        return image
    return "docker.io/" + image


def in_registries(image: str, registries: list[str]) -> bool:
    """Whether the image comes from one of `registries`, each a registry host with an optional
    path (`registry.internal:5000`, `ghcr.io/acme`, a trailing `/` is ignored). `docker.io`
    covers images without a registry host."""
    normalized = normalize_image(image)
    return any(normalized.startswith(r.rstrip("/") + "/") for r in registries)
