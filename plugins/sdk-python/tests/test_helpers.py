"""Unit tests of the helpers that need no component:
`python3 -m unittest discover -s plugins/sdk-python/tests`."""

import sys
import unittest
from pathlib import Path

# `helpers` is imported as a module of its own: the package's `__init__` needs the bindings
# componentize-py generates while it builds a component, which plain Python does not have.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "staticlet_sdk"))

from helpers import ConfigError, container_images, in_registries, normalize_image, string_list  # noqa: E402


class Helpers(unittest.TestCase):
    def test_every_kind_of_container_is_listed_with_its_field_path(self):
        pod = {
            "spec": {
                "initContainers": [{"image": "init:1"}],
                "containers": [{"image": "a"}, {}],
                "ephemeralContainers": [{"image": "debug"}],
            }
        }
        self.assertEqual(
            list(container_images(pod)),
            [
                ("spec.initContainers[0].image", "init:1"),
                ("spec.containers[0].image", "a"),
                ("spec.containers[1].image", ""),
                ("spec.ephemeralContainers[0].image", "debug"),
            ],
        )
        self.assertEqual(list(container_images({})), [])

    def test_an_image_without_a_registry_host_is_docker_hubs(self):
        self.assertEqual(normalize_image("busybox"), "docker.io/busybox")
        self.assertEqual(normalize_image("library/nginx:1"), "docker.io/library/nginx:1")
        self.assertEqual(normalize_image("registry.internal:5000/app:1"), "registry.internal:5000/app:1")
        self.assertEqual(normalize_image("reg:5000/app"), "reg:5000/app")
        self.assertEqual(normalize_image("localhost/app"), "localhost/app")
        self.assertEqual(normalize_image("ghcr.io/acme/app"), "ghcr.io/acme/app")

    def test_registries_match_whole_path_segments_with_or_without_a_trailing_slash(self):
        self.assertTrue(in_registries("busybox", ["docker.io"]))
        self.assertTrue(in_registries("ghcr.io/acme/app:1", ["quay.io", "ghcr.io/acme/"]))
        self.assertFalse(in_registries("ghcr.io/acmeco/app:1", ["ghcr.io/acme"]))
        self.assertFalse(in_registries("docker.io.evil.example/app", ["docker.io"]))
        self.assertFalse(in_registries("busybox", ["registry.internal:5000"]))

    def test_a_string_list_setting_must_be_a_non_empty_list_of_non_empty_strings(self):
        self.assertEqual(string_list({"registries": ["a", "b"]}, "registries"), ["a", "b"])
        for settings in ({}, {"registries": []}, {"registries": "a"}, {"registries": ["a", 7]}, {"registries": [""]}):
            with self.assertRaises(ConfigError) as raised:
                string_list(settings, "registries")
            self.assertEqual(raised.exception.code, "config")
            self.assertIn("`registries`", raised.exception.message)


if __name__ == "__main__":
    unittest.main()
