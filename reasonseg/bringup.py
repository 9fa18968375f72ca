"""Start the nodes of `driving.launch.py` as processes where `ros2 launch` is not installed.

Mirrors the launch file one to one (same executable, node name, namespace,
parameter file, backend override, remapping and Fast DDS profile); a test parses
the launch file to keep the two in step.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path


LAUNCH_DEFAULTS = {"camera_topic": "/camera/image_raw", "backend": "onnxruntime", "namespace": "perception"}


def bringup_share() -> Path:
    """The source tree's reasonseg_bringup in a checkout (editable install), else the installed share dir."""
    source = Path(__file__).resolve().parents[1] / "ros_ws" / "src" / "reasonseg_bringup"
    return source if source.is_dir() else Path(sys.prefix) / "share" / "reasonseg_bringup"


def node_command(*, camera_topic: str, params_file: str | None, backend: str | None, namespace: str,
                 node_name: str = "reasonseg") -> list[str]:
    exe = shutil.which("reasonseg_node") or str(Path(sys.executable).parent / "reasonseg_node")
    # The node checks the file itself (one line, exit 2), as it must when started by `ros2 launch`.
    params = Path(params_file) if params_file else bringup_share() / "config" / "driving.yaml"
    cmd = [exe, "--ros-args", "-r", f"__node:={node_name}", "--params-file", str(params),
           "-r", f"image:={camera_topic}"]
    if namespace:
        cmd += ["-r", f"__ns:=/{namespace.strip('/')}"]
    if backend:
        cmd += ["-p", f"segmenter.backend:={backend}"]
    return cmd


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for our nodes: loopback discovery and the shared-memory profile unless set."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(bringup_share() / "config" / "fastdds_localhost_shm.xml"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_bringup(*, camera_topic: str, params_file: str | None, backend: str | None, namespace: str) -> int:
    cmd = node_command(camera_topic=camera_topic, params_file=params_file, backend=backend, namespace=namespace)
    print("[bringup] " + " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=ros_environment())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=10)
