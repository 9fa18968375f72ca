"""Settings from files and command lines: YAML (plain nested or the ROS params form), `--set key=value`
overrides, with bounds that keep a hostile file from exhausting memory, the stack or time."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from reasonseg.core.errors import ConfigError, one_line
from reasonseg.core.settings import Settings, brief
from reasonseg.settings.validation import settings_from_flat, settings_from_nested


def load_settings(path: str | Path | None, node_name: str = "reasonseg") -> Settings:
    """Read settings from YAML (plain nested, or ROS params form for `node_name`)."""
    if path is None:
        return Settings()
    p = Path(path)
    data = load_yaml(read_config_text(p, "config file"), f"config file {p}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping")
    ros_params = _ros_params_section(data, node_name)
    if ros_params is not None:
        return settings_from_flat(_flatten(ros_params))
    return settings_from_nested(data)


def with_overrides(settings: Settings, assignments: Iterable[str]) -> Settings:
    """Apply `key=value` overrides (the CLI's repeatable --set) and validate the result; ConfigError."""
    values = settings.flat()
    for item in assignments:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. mllm.model=/path/to/model")
        values[name.strip()] = parse_param_value(name.strip(), raw)
    return settings_from_flat(values)


def parse_param_value(name: str, raw: str) -> Any:
    """A `-p name:=value` / `--set name=value` value as rcl reads it: YAML, with strtod-style floats too."""
    value = load_yaml(raw, f"parameter {name}: value {brief(raw, 60)}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


# What a settings file may be: it holds ~100 values nested 4 deep (<node>: ros__parameters: section: name).
# The bounds keep a hostile file from exhausting memory (/dev/zero), the stack (3,000 nested brackets) or time
# (a "billion laughs" of aliases, which the flattening below would expand), with one line saying so.
MAX_CONFIG_BYTES = 1 << 20


MAX_YAML_DEPTH = 32


MAX_YAML_VALUES = 100_000


def read_config_text(p: Path, what: str) -> str:
    """A settings file's text, read no further than MAX_CONFIG_BYTES; ConfigError naming `what` otherwise."""
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {p}") from None
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read: {exc.strerror or one_line(exc)}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} {p} is larger than {MAX_CONFIG_BYTES >> 20} MB: not a settings file "
                          "(give the YAML file that holds the settings)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p} is not valid YAML: not UTF-8 text ({one_line(exc)})") from None


def load_yaml(text: str, what: str) -> Any:
    """yaml.safe_load of a settings file or value, within the bounds above; ConfigError "`what` <problem>"."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{what} is larger than {MAX_CONFIG_BYTES >> 20} MB: not a settings value")
    try:
        problem = _yaml_shape_problem(text)
        if problem:
            raise ConfigError(f"{what} {problem}")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {one_line(exc)}") from None
    except ValueError as exc:  # int(): a number of more digits than Python converts
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{what} holds a number of more than {sys.get_int_max_str_digits()} digits: "
                          "no setting takes one; fix the value") from None


def _yaml_shape_problem(text: str) -> str | None:
    """Why loading `text` would nest or expand too far, else None. Reads the parser's event stream only (no
    recursion, nothing built): nesting depth, and the count of values with every alias expanded in full."""
    values = 0
    open_: list[list[Any]] = []  # per open collection: [anchor, values before it, deepest level inside]
    closed: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of what it names
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_.append([event.anchor, values, len(open_) + 1])
            values += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, deepest = open_.pop()
            if open_:
                open_[-1][2] = max(open_[-1][2], deepest)
            if anchor is not None:
                closed[anchor] = (values - before, deepest - len(open_))
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if event.anchor is not None:
                closed[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if any(entry[0] == event.anchor for entry in open_):
                return f"has an alias (*{event.anchor}) inside what it names: a loop no setting can hold"
            size, levels = closed.get(event.anchor, (1, 0))  # an undefined one: safe_load refuses it
            values += size
            if open_:
                open_[-1][2] = max(open_[-1][2], len(open_) + levels)
        if open_ and open_[-1][2] > MAX_YAML_DEPTH:
            return (f"is nested deeper than {MAX_YAML_DEPTH} levels (settings need 4: <node>: ros__parameters: "
                    "section: name): fix its brackets or indentation")
        if values > MAX_YAML_VALUES:
            return (f"expands to more than {MAX_YAML_VALUES} values (aliases counted in full; settings are about "
                    "100): remove the aliases that multiply")
    return None


def _ros_params_section(data: dict, node_name: str) -> dict | None:
    """The `ros__parameters` for `node_name` in any namespace: `/**`, `name`, `/ns/name`, `/**/name`."""
    for key, section in data.items():
        matches = key == "/**" or str(key).rsplit("/", 1)[-1] == node_name
        if matches and isinstance(section, dict) and "ros__parameters" in section:
            return section["ros__parameters"] or {}
    return None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
