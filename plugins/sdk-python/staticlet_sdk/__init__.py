"""Write staticlet admission validators in Python, built into components with componentize-py.

A policy is a function from the plugin's settings (the `config:` of its entry in the agent
config, as a dict) to a check of one pod: the check gets the pod's context and the pod as a dict
(canonical Kubernetes JSON) and returns or yields `(field, message)` pairs to reject the pod and
strings to warn about it.

    # componentize-py looks the world's classes up in the app module: import them from here.
    from staticlet_sdk import Validator, WitWorld, container_images, policy  # noqa: F401

    @policy
    def no_latest(settings):
        def check(ctx, pod):
            for field, image in container_images(pod):
                if image.endswith(":latest"):
                    yield field, "pin a version instead of :latest"
        return check

Build it with this directory on the Python path as well as the app's:

    componentize-py -d wit/since_v0.2.0 -w admission-validator componentize \
      -p plugins/sdk-python -p DIR-OF-APP app -o policy.wasm

Raise `ConfigError` from the policy function for settings it cannot work with, and
`PluginError(code, message)` from a check that cannot do its job; any other exception is
reported as a `config` error from the policy function and an `internal` one from a check,
rather than trapping the component.
"""

import json
from typing import Callable, Iterable, Optional, Union

import wit_world
from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import validator as wit
from wit_world.imports import host, types

from .helpers import ConfigError, PluginError, container_images, in_registries, normalize_image, string_list

__all__ = [
    "ConfigError",
    "PluginError",
    "Validator",
    "WitWorld",
    "container_images",
    "in_registries",
    "log_debug",
    "log_error",
    "log_info",
    "log_warn",
    "node_name",
    "normalize_image",
    "policy",
    "string_list",
]

# What a check returns: `(field, message)` violations and warning strings, or None for neither.
Finding = Union[tuple[str, str], str]
Check = Callable[[types.PodContext, dict], Optional[Iterable[Finding]]]

_build: Optional[Callable[[dict], Check]] = None
_check: Optional[Check] = None


def policy(build: Callable[[dict], Check]) -> Callable[[dict], Check]:
    """Makes `build` the component's policy: `init` calls it with the settings and keeps the
    check it returns for every pod. Use it as a decorator, once per component."""
    global _build
    _build = build
    return build


def log_debug(message: str) -> None:
    """Logs a debugging detail through the agent, tagged with the plugin's name."""
    host.log(types.LogLevel.DEBUG, message)


def log_info(message: str) -> None:
    """Logs a line through the agent, tagged with the plugin's name."""
    host.log(types.LogLevel.INFO, message)


def log_warn(message: str) -> None:
    """Logs a warning through the agent, tagged with the plugin's name."""
    host.log(types.LogLevel.WARN, message)


def log_error(message: str) -> None:
    """Logs an error through the agent, tagged with the plugin's name."""
    host.log(types.LogLevel.ERROR, message)


def node_name() -> str:
    """The node the agent runs pods for (its `--hostname-override`)."""
    return host.node_name()


def _err(code: str, message: str) -> Err:
    return Err(types.Error(code=code, message=message))


def _failure(e: Exception, code: str) -> Err:
    """The WIT error for an exception: a `PluginError` keeps its code (and componentize-py's own
    `Err` passes through), anything else gets `code`, so that a slip in a policy is reported with
    its cause instead of trapping."""
    if isinstance(e, Err):
        return e
    if isinstance(e, PluginError):
        return _err(e.code, e.message)
    return _err(code, f"{type(e).__name__}: {e}")


class WitWorld(wit_world.WitWorld):
    """The world's `init`, as componentize-py requires it in the app module."""

    def init(self, config: str) -> None:
        global _check
        if _build is None:
            raise _err("internal", "the app module has no @policy function")
        try:
            check = _build(json.loads(config or "{}"))
        except Exception as e:
            raise _failure(e, "config") from None
        if not callable(check):
            raise _err("internal", f"the @policy function returned {type(check).__name__}, not the check of one pod")
        _check = check


class Validator(exports.Validator):
    """The `validator` interface, as componentize-py requires it in the app module."""

    def validate(self, ctx: types.PodContext, pod: str) -> wit.Verdict:
        if _check is None:
            raise _err("internal", "validate was called before init")
        try:
            findings = list(_check(ctx, json.loads(pod)) or ())
        except Exception as e:
            raise _failure(e, "internal") from None
        return wit.Verdict(
            violations=[wit.Violation(field=f[0], message=f[1]) for f in findings if not isinstance(f, str)],
            warnings=[f for f in findings if isinstance(f, str)],
        )
