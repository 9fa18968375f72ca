"""JSON Schema of the node's parameter files, generated from the settings (`reasonseg/core/settings.py`, choices
from the registries: `validation.REGISTRY_CHOICES`).

The schema lives next to the node, as Autoware's packages ship theirs
(`ros_ws/src/reasonseg_perception/schema/reasonseg_node.schema.json`): editors validate a params YAML
against it while it is written, and CI checks the shipped YAMLs with it. It is never edited by hand;
after changing a setting, regenerate it:

    .venv/bin/python -m reasonseg.settings.schema > ros_ws/src/reasonseg_perception/schema/reasonseg_node.schema.json

The node still validates every value itself at start (types, ranges, choices and the rules the schema
cannot say, such as NaN); the tests check that the two agree.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from reasonseg.core.settings import Settings, is_section
from reasonseg.settings.validation import choices_of

NODE = "reasonseg_node"
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", tuple: "array"}
# parameters rclpy gives every node (ros_args.ROS_STANDARD_PARAMETERS; the tests keep the two in step)
_ROS_PARAMETERS = {
    "use_sim_time": {"type": "boolean", "default": False, "description": "ROS: take time from /clock"},
    "start_type_description_service": {"type": "boolean", "default": True,
                                       "description": "ROS: serve the node's message type descriptions"},
    "qos_overrides": {"type": "object", "description": "ROS: qos_overrides.<topic>.<publisher|subscription>."
                                                       "<policy> (see README)"},
}


def _property(f: dataclasses.Field, name: str) -> dict[str, Any]:
    meta, kind = f.metadata, type(f.default)
    prop: dict[str, Any] = {"type": _JSON_TYPES[kind], "description": meta["doc"],
                            "default": list(f.default) if kind is tuple else f.default}
    if kind is tuple:
        prop["items"] = {"type": "string"}
    if choices := choices_of(name, f):
        prop["enum"] = list(choices)
    if meta["lo"] is not None:
        prop["minimum"] = meta["lo"]
    if meta["hi"] is not None:
        prop["maximum"] = meta["hi"]
    return prop | meta["schema"]


def _object(cls: type, prefix: str = "") -> dict[str, Any]:
    properties = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        properties[f.name] = _object(f.default_factory, name + ".") if is_section(f) else _property(f, name)
    return {"type": "object", "properties": properties, "additionalProperties": False}


def parameter_schema() -> dict[str, Any]:
    """Draft-07 schema of a params file keyed `/**` (the form the launch file and the shipped YAMLs use)."""
    params = _object(Settings)
    params["properties"] |= _ROS_PARAMETERS
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"Parameters for {NODE}",
        "type": "object",
        "definitions": {NODE: params},
        "properties": {"/**": {"type": "object", "properties": {"ros__parameters": {"$ref": f"#/definitions/{NODE}"}},
                               "required": ["ros__parameters"], "additionalProperties": False}},
        "required": ["/**"],
    }


def render() -> str:
    return json.dumps(parameter_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
