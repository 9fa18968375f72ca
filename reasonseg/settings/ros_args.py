"""Checks of what a ROS node is started with, before rcl reads it: `--params-file` / `-p` values,
$ROS_DOMAIN_ID, URL credentials, and misspelt parameter names."""
from __future__ import annotations

import dataclasses
import os
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Iterable, Mapping

from reasonseg.core.errors import ConfigError
from reasonseg.core.settings import Settings, is_section, no_credentials
from reasonseg.settings.loading import load_yaml, parse_param_value, read_config_text
from reasonseg.settings.validation import settings_from_flat


def check_url_parameters(values: Mapping[str, Any]) -> None:
    """Validate the URL settings among `values` (flat names), the others left for later: the node does this
    before it declares any parameter, so a URL with credentials never becomes a readable parameter value."""
    urls = [f"{sec.name}.{f.name}" for sec in dataclasses.fields(Settings) if is_section(sec)
            for f in dataclasses.fields(sec.default_factory) if f.metadata.get("check") is no_credentials]
    settings_from_flat({name: values[name] for name in urls if name in values})


# Parameters any rclpy node may be given besides ours (prefixes end in ".").
ROS_STANDARD_PARAMETERS = ("use_sim_time", "start_type_description_service", "qos_overrides.")


def unknown_parameter_warnings(given: Iterable[str], declared: Iterable[str]) -> list[str]:
    """One line per parameter name given (YAML or -p) that is not a setting: a misspelt name would
    otherwise be ignored silently and its default used."""
    known = list(declared)
    lines = []
    for name in sorted(set(given) - set(known)):
        if name in ROS_STANDARD_PARAMETERS or name.startswith(ROS_STANDARD_PARAMETERS[-1]):
            continue
        close = get_close_matches(name, known, n=1)
        lines.append(f"unknown parameter '{name}' ignored" + (f" (did you mean '{close[0]}'?)" if close else ""))
    return lines


MAX_DOMAIN_ID = 232  # higher ids map to UDP ports above 65535


def check_domain_id() -> None:
    """$ROS_DOMAIN_ID, when set, is an integer from 0 to MAX_DOMAIN_ID; ConfigError otherwise. rcl refuses a
    non-number with a traceback, and Fast DDS ends the process (exit 1, no word of ours) on one above 232."""
    raw = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_DOMAIN_ID):
        raise ConfigError(f"ROS_DOMAIN_ID={raw[:40]!r} must be an integer from 0 to {MAX_DOMAIN_ID}")


def check_ros_args(argv: list[str]) -> None:
    """Validate a node command line's parameter sources before rcl reads them; ConfigError on a bad one.

    `--params-file PATH`: exists and is YAML (rcl would refuse it with a traceback-shaped error and
    an extra log line). `-p name:=value` for one of our settings: of the right type and in range,
    because rcl silently drops a `-p` whose type differs from the same key in a `/**` params file.
    """
    overrides: dict[str, Any] = {}
    names = Settings().flat()
    for flag, arg in zip(argv, argv[1:]):
        if flag == "--params-file":
            _check_params_file(Path(arg))
        elif flag in ("-p", "--param"):
            name, sep, raw = arg.partition(":=")
            if sep and name in names:
                overrides[name] = parse_param_value(name, raw)
    settings_from_flat(overrides)


def _check_params_file(p: Path) -> None:
    load_yaml(read_config_text(p, "params file"), f"params file {p}")
