"""An admission validator in Python: every container image must come from an allowed registry.

Settings (the `config:` of its entry in the agent config):

    registries: [registry.internal:5000, ghcr.io/acme]

An image matches a registry when it starts with that registry followed by `/`. An image with no
registry host (`busybox`, `library/nginx`) is Docker Hub's, `docker.io`.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.exports import validator
from wit_world.imports import host, types

_registries: list[str] = []


def _registry_of(image: str) -> str:
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return "docker.io/" + image


class WitWorld(wit_world.WitWorld):
    def init(self, config: str) -> None:
        global _registries
        settings = json.loads(config or "{}")
        registries = settings.get("registries")
        if not isinstance(registries, list) or not all(isinstance(r, str) and r for r in registries):
            raise Err(types.Error(code="config", message="settings need `registries`: a list of registry prefixes"))
        _registries = [r.rstrip("/") + "/" for r in registries]
        host.log(types.LogLevel.INFO, "allowing images from " + ", ".join(registries))


class Validator(wit_world.exports.Validator):
    def validate(self, ctx: types.PodContext, pod: str) -> validator.Verdict:
        spec = json.loads(pod).get("spec", {})
        violations = []
        for kind in ("initContainers", "containers", "ephemeralContainers"):
            for i, container in enumerate(spec.get(kind) or []):
                image = container.get("image", "")
                if not any(_registry_of(image).startswith(r) for r in _registries):
                    violations.append(
                        validator.Violation(
                            field=f"spec.{kind}[{i}].image",
                            message=f"image {image} is not from an allowed registry ({', '.join(r.rstrip('/') for r in _registries)})",
                        )
                    )
        return validator.Verdict(violations=violations, warnings=[])
