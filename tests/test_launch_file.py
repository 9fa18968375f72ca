"""driving.launch.py needs `launch`/`launch_ros` (often absent): parse it and check it against the runner; where
launch_ros is installed, also build its description."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from reasonseg_perception.launch_runner import LAUNCH_DEFAULTS, bringup_share, node_command, ros_environment
from reasonseg.settings.loading import load_settings

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "ros_ws/src/reasonseg_bringup/launch/driving.launch.py"


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def _kw(call: ast.Call) -> dict[str, ast.AST]:
    return {k.arg: k.value for k in call.keywords}


def test_launch_file_names_real_executables_and_params():
    tree = ast.parse(LAUNCH.read_text())
    args = {c.args[0].value: _kw(c)["default_value"] for c in _calls(tree, "DeclareLaunchArgument")}
    assert set(args) == {"camera_topic", "params_file", "backend", "namespace", "local_shm"}
    for name in ("camera_topic", "backend", "namespace", "local_shm"):  # the runner mirrors the launch defaults
        assert args[name].value == LAUNCH_DEFAULTS[name]
    # choice lists come from the one definition in reasonseg.segmenters.registry
    backend_choices = _kw(next(c for c in _calls(tree, "DeclareLaunchArgument") if c.args[0].value == "backend"))
    assert ast.unparse(backend_choices["choices"]) == "['', *BACKENDS]"
    # the lifecycle-aware action where launch_ros has it, a plain Node only where that import fails
    (guard,) = [n for n in tree.body if isinstance(n, ast.Try)]
    assert ast.unparse(guard.body) == "from launch_ros.actions import LifecycleNode as NodeAction"
    (fallback,) = guard.handlers
    assert ast.unparse(fallback.type) == "ImportError"
    assert ast.unparse(fallback.body) == "from launch_ros.actions import Node as NodeAction"
    (node,) = _calls(tree, "NodeAction")
    kw = _kw(node)
    assert kw["package"].value == "reasonseg_perception" and kw["name"].value == "reasonseg"
    assert ast.unparse(kw["namespace"]) == "LaunchConfiguration('namespace')"  # LifecycleNode requires it
    executable = kw["executable"].value
    setup = (ROOT / "ros_ws/src/reasonseg_perception/setup.py").read_text()
    assert f'"{executable} = reasonseg_perception.entry:node"' in setup
    # the params file the launch file defaults to exists and every parameter in it is a declared one
    params_default = ast.unparse(args["params_file"])
    assert "'config', 'driving.yaml'" in params_default
    load_settings(bringup_share() / "config" / "driving.yaml")
    assert ast.unparse(kw["parameters"]) == "[LaunchConfiguration('params_file'), *overrides]"
    node_fn = ast.unparse(next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_node"))
    # backend:= overrides the params file only when given: the mllm YAMLs choose their own backend
    assert "[{'segmenter.backend': backend}] if backend else []" in node_fn
    assert ("image", "camera_topic") in [(r.elts[0].value, r.elts[1].args[0].value) for r in kw["remappings"].elts]
    # the loopback shared-memory DDS profile is opt-in (local_shm), so other machines can reach the node
    env_vars = _calls(tree, "SetEnvironmentVariable")
    assert {c.args[0].value for c in env_vars} == {"FASTDDS_DEFAULT_PROFILES_FILE", "ROS_AUTOMATIC_DISCOVERY_RANGE"}
    for call in env_vars:
        assert ast.unparse(_kw(call)["condition"]) == "IfCondition(LaunchConfiguration('local_shm'))"
    assert "fastdds_localhost_shm.xml" in ast.unparse(env_vars[0])
    assert (bringup_share() / "config" / "fastdds_localhost_shm.xml").is_file()


def test_runner_command_matches_launch_file():
    cmd = node_command(camera_topic="/cam", params_file=None, backend="torch", namespace="perception")
    assert Path(cmd[0]).name == "reasonseg_node"
    assert "image:=/cam" in cmd and "__ns:=/perception" in cmd and "segmenter.backend:=torch" in cmd
    assert cmd[cmd.index("--params-file") + 1].endswith("config/driving.yaml")
    default = node_command(camera_topic="/cam", params_file=None, backend=LAUNCH_DEFAULTS["backend"],
                           namespace="perception")
    assert not any("segmenter.backend" in c for c in default)  # the params file's backend stands
    base = {"PATH": "/usr/bin"}
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in ros_environment(base)  # multi-machine by default
    local = ros_environment(base, local_shm=True)
    assert local["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert local["FASTDDS_DEFAULT_PROFILES_FILE"].endswith("fastdds_localhost_shm.xml")


def test_bringup_setup_installs_launch_and_config():
    setup = (ROOT / "ros_ws/src/reasonseg_bringup/setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup
    for pkg in ("reasonseg_perception", "reasonseg_bringup", "reasonseg_interfaces"):
        assert (ROOT / "ros_ws/src" / pkg / "package.xml").is_file()


def test_launch_description_starts_a_lifecycle_node(monkeypatch):
    pytest.importorskip("launch_ros", reason="launch_ros not installed (it comes with a ROS 2 install, not PyPI): "
                                             "the parse test above checks the file")
    from launch import LaunchContext
    from launch.actions import OpaqueFunction
    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("driving_launch", LAUNCH)
    launch_file = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch_file)
    # outside a colcon install space the package index does not know reasonseg_bringup
    monkeypatch.setattr(launch_file, "get_package_share_directory", lambda package: str(bringup_share()))
    description = launch_file.generate_launch_description()
    context = LaunchContext()
    context.launch_configurations.update({"camera_topic": "/cam", "backend": "", "namespace": "perception",
                                          "params_file": str(bringup_share() / "config" / "driving.yaml")})
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = opaque.execute(context)
    assert isinstance(node, LifecycleNode)
    assert node.node_package == "reasonseg_perception" and node.node_executable == "reasonseg_node"
