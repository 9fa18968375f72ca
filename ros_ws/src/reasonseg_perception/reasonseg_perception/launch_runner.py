"""reasonseg_launch: start the nodes of `driving.launch.py` as processes where `ros2 launch` is not installed.

Mirrors the launch file one to one (same executable, node name, namespace, parameter file,
backend override, image remapping, and the opt-in loopback shared-memory DDS profile); a test
parses the launch file to keep the two in step.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from reasonseg.segmenters.registry import BACKENDS

LAUNCH_DEFAULTS = {"camera_topic": "/camera/image_raw", "backend": "", "namespace": "perception",
                   "local_shm": "false"}


def bringup_share() -> Path:
    """The source tree's reasonseg_bringup in a checkout (editable install), else the installed share dir."""
    source = Path(__file__).resolve().parents[2] / "reasonseg_bringup"
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


def ros_environment(base: dict[str, str] | None = None, *, local_shm: bool = False) -> dict[str, str]:
    """Environment for our nodes. `local_shm`: every node on this machine, so the loopback-only Fast DDS
    profile with a shared-memory segment big enough for camera frames (opt-in: it hides the node from
    other machines)."""
    env = dict(os.environ if base is None else base)
    if local_shm:
        env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(bringup_share() / "config" / "fastdds_localhost_shm.xml"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reasonseg_launch", description=__doc__.splitlines()[0])
    p.add_argument("--camera-topic", default=LAUNCH_DEFAULTS["camera_topic"])
    p.add_argument("--params-file", default=None, help="default: reasonseg_bringup/config/driving.yaml")
    p.add_argument("--backend", default=LAUNCH_DEFAULTS["backend"], choices=["", *BACKENDS],
                   help="segmenter backend (default: as in the params file)")
    p.add_argument("--namespace", default=LAUNCH_DEFAULTS["namespace"])
    p.add_argument("--local-shm", action="store_true",
                   help="camera driver and node on this machine: loopback-only DDS with shared memory")
    args = p.parse_args(argv)
    cmd = node_command(camera_topic=args.camera_topic, params_file=args.params_file, backend=args.backend,
                       namespace=args.namespace)
    print("[reasonseg_launch] " + " ".join(cmd), flush=True)
    proc = start_child(cmd, ros_environment(local_shm=args.local_shm))
    try:
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from docker stop / systemd (reasonseg/core/signals.py): stop the node too
        return stop_child(proc)


def start_child(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in its own process group: Ctrl-C in the terminal reaches only us, and `stop_child` passes it on
    once. (Reaching the child directly, it could land while the child's interpreter starts, before any handler
    of ours: a traceback from Python's start-up; and the child got it twice.)"""
    return subprocess.Popen(cmd, env=env, process_group=0)


def stop_child(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """SIGTERM (rclpy and entry.py stop on it cleanly; still starting up, the default action ends the child
    without output), then SIGKILL after `timeout_s`. Returns the exit code, 0 for a stop by our SIGTERM."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return 0 if code == -signal.SIGTERM else code


if __name__ == "__main__":
    sys.exit(main())
