"""Settings validated: a flat ("segmenter.num_points": 20, as ROS hands parameters over) or nested mapping
becomes a `Settings` (reasonseg/core/settings.py) or a ConfigError naming the parameter. Types, bounds and rules
come from the fields; the choices of the registry-backed fields are the registries' keys (`REGISTRY_CHOICES`),
so one registry row adds a choice to validation, the parameter schema, the CLI and the launch file at once."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from reasonseg.core.errors import ConfigError
from reasonseg.core.settings import Settings, brief, is_section, redacted
from reasonseg.grounding.vlm import registry as vlm_registry
from reasonseg.pipelines import registry as pipelines_registry
from reasonseg.segmenters import registry as segmenters_registry

# dotted setting -> its choices: the keys of the registry that builds it (fields marked `registry=True`)
REGISTRY_CHOICES: dict[str, tuple[str, ...]] = {
    "pipeline": pipelines_registry.PIPELINES,
    "segmenter.kind": segmenters_registry.KINDS,
    "segmenter.backend": segmenters_registry.BACKENDS,  # auto: see segmenters/registry.py auto_backend
    "segmenter.precision": segmenters_registry.PRECISIONS,  # the exported encoder variants a segmenter runs
    "mllm.backend": tuple(vlm_registry.BACKENDS),
}


def choices_of(name: str, f: dataclasses.Field) -> tuple[str, ...] | None:
    """The allowed values of the setting `name` (dotted), None when any value of its type is allowed."""
    if f.metadata.get("registry"):
        return REGISTRY_CHOICES[name]  # a KeyError here is a field marked registry=True with no row above
    return f.metadata.get("choices")


def settings_from_flat(values: Mapping[str, Any]) -> Settings:
    """Dotted names ("segmenter.num_points") -> validated Settings; ConfigError names the first bad one."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        section, _, leaf = key.partition(".")
        if leaf:
            nested.setdefault(section, {})[leaf] = value
        else:
            nested[section] = value
    return settings_from_nested(nested)


def settings_from_nested(values: Mapping[str, Any]) -> Settings:
    """{"segmenter": {"num_points": 20}} -> validated Settings; ConfigError names the first bad one."""
    return _build(Settings, values, "")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'settings'} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(f"{prefix}{u}" for u in set(values) - set(known))  # YAML keys may be numbers, null, lists
    if unknown:
        raise ConfigError(f"unknown parameter(s): {brief(', '.join(unknown), 200)[1:-1]}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        f = known[name]
        if is_section(f):
            kwargs[name] = _build(f.default_factory, value or {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _check(f, value, prefix + name)
    return cls(**kwargs)


def _check(f: dataclasses.Field, value: Any, name: str) -> Any:
    kind = type(f.default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"parameter {name} must be a list of strings, got {brief(value)}")
        value = tuple(value)
    if type(value) is not kind:
        raise ConfigError(f"parameter {name} must be {kind.__name__}, got {type(value).__name__} {brief(value)}")
    if kind is float and not math.isfinite(value):  # NaN passes every range check below
        raise ConfigError(f"parameter {name}={value!r} must be a finite number")
    meta = f.metadata
    choices = choices_of(name, f)
    if choices and value not in choices:
        raise ConfigError(f"parameter {name}={brief(value)} not one of {', '.join(choices)}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(f"parameter {name}={brief(value)} below minimum {meta['lo']}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(f"parameter {name}={brief(value)} above maximum {meta['hi']}")
    problem = meta["check"](value) if meta.get("check") else None
    if problem:
        raise ConfigError(f"parameter {name}={list(value) if isinstance(value, tuple) else redacted(value)!r}: "
                          f"{problem}")
    return value
