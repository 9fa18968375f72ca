"""The node's parameter schema (Autoware's habit: a JSON Schema next to the node): generated from the settings,
passed by every shipped params file, and refusing what the node refuses."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from reasonseg.core.settings import Settings
from reasonseg.settings.validation import settings_from_flat
from reasonseg.settings.loading import load_settings
from reasonseg.settings.ros_args import ROS_STANDARD_PARAMETERS
from reasonseg.core.errors import ConfigError
from reasonseg.settings.schema import _ROS_PARAMETERS, parameter_schema, render

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is a test dependency (scripts/setup.sh)")

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "ros_ws/src/reasonseg_perception/schema/reasonseg_node.schema.json"
PARAMS_FILES = sorted((ROOT / "ros_ws/src/reasonseg_bringup/config").glob("*.yaml"))


def _errors(doc: dict) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(parameter_schema()).iter_errors(doc)]


def _with(doc: dict, dotted: str, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc["/**"]["ros__parameters"]
    *sections, leaf = dotted.split(".")
    for name in sections:
        node = node.setdefault(name, {})
    node[leaf] = value
    return doc


@pytest.fixture(scope="module")
def driving() -> dict:
    return yaml.safe_load((ROOT / "ros_ws/src/reasonseg_bringup/config/driving.yaml").read_text())


def test_the_shipped_schema_is_generated_from_the_settings() -> None:
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))
    assert SCHEMA_FILE.read_text() == render(), (
        "stale schema: .venv/bin/python -m reasonseg.settings.schema > " + str(SCHEMA_FILE.relative_to(ROOT)))
    assert set(_ROS_PARAMETERS) == {n.rstrip(".") for n in ROS_STANDARD_PARAMETERS}
    node = parameter_schema()["definitions"]["reasonseg_node"]["properties"]
    assert node["segmenter"]["properties"]["precision"]["default"] == Settings().segmenter.precision


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: p.name)
def test_every_shipped_params_file_passes_the_schema(path: Path) -> None:
    assert _errors(yaml.safe_load(path.read_text())) == []
    load_settings(path)


@pytest.mark.parametrize("key, value", [
    ("segmenter.num_points", 100),            # above its maximum
    ("runtime.max_image_pixels", 0),          # below its minimum
    ("detector.score_floor", "high"),         # a string for a number
    ("runtime.publish_overlay", "yes"),       # a string for a boolean
    ("segmenter.threads", True),              # a boolean for an integer
    ("pipeline", "magic"),                    # not a choice
    ("mllm.dtype", "int4"),
    ("segmenter.device", "gpu"),              # device pattern
    ("lens.device", "cuda:x"),
    ("cameras", ["front", "1rear"]),          # not a ROS name token
    ("cameras", ["front", "front"]),          # twice
    ("cameras", []),
    ("cameras", ["", "front"]),               # the node's own topics and a named camera
    ("segmenter.num_point", 3),               # misspelt
    ("segmenter", "lite_sam"),                # a value for a section
])
def test_the_schema_refuses_what_the_node_refuses(driving, key, value) -> None:
    assert _errors(_with(driving, key, value)), f"the schema accepts {key}={value!r}"
    with pytest.raises(ConfigError):
        settings_from_flat(Settings().flat() | {key: value})


@pytest.mark.parametrize("key, value", [
    ("cameras", ["front", "left_2"]),
    ("segmenter.device", "cuda:1"),
    ("detector.score_floor", 1),              # an integer where a number goes
    ("use_sim_time", True),                   # rclpy's own parameters
    ("qos_overrides", {"/image": {"subscription": {"reliability": "reliable"}}}),
])
def test_the_schema_accepts_what_the_node_accepts(driving, key, value) -> None:
    assert _errors(_with(driving, key, value)) == []
    if key not in _ROS_PARAMETERS:
        settings_from_flat(Settings().flat() | {key: value})
