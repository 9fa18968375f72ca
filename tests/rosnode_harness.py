"""Run reasonseg_node as its own process and talk to it over DDS from the test process."""
from __future__ import annotations

import itertools
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from reasonseg_perception.launch_runner import node_command, ros_environment

NS = "/t"


def use_ros_transport() -> None:
    """Loopback discovery and the shared-memory profile (camera frames > 512 kB) for this process.

    Fast DDS reads its XML profile once per process, at the first participant, so call this first.
    """
    os.environ.update({k: v for k, v in ros_environment(local_shm=True).items()
                       if k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")})


_DOMAIN_CALLS = itertools.count()


def unique_domain_id() -> int:
    """A ROS domain for one node under test and its client, 1..100 (Linux's safe range): a new one per call, so
    a module's long-lived node never answers another test's client (both would be /t/reasonseg), offset by
    the pid for parallel pytest processes."""
    return 1 + (os.getpid() + next(_DOMAIN_CALLS)) % 100


def start_node(tmp_path: Path, domain_id: int, *extra_params: str, env_extra: dict | None = None,
               params_file: Path | None = None, node_name: str = "reasonseg") -> tuple[subprocess.Popen, Path]:
    """reasonseg_node as `reasonseg bringup` starts it (shipped YAML unless `params_file`), in namespace NS."""
    env = ros_environment(local_shm=True)
    env.update({"ROS_DOMAIN_ID": str(domain_id), "RCUTILS_COLORIZED_OUTPUT": "0", **(env_extra or {})})
    cmd = node_command(camera_topic="/cam/image", params_file=str(params_file) if params_file else None,
                       backend="", namespace=NS, node_name=node_name)
    for p in extra_params:
        cmd += ["-p", p]
    log = tmp_path / f"node-{time.monotonic_ns()}.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, log


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bgr_image_msg(Image, bgr: np.ndarray, stamp_ns: int, frame_id: str = "cam"):
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height, msg.width = bgr.shape[:2]
    msg.encoding, msg.step = "bgr8", bgr.shape[1] * 3
    msg.data = bgr.tobytes()
    return msg


def camera_topic(camera: str, leaf: str) -> str:
    """Where the node (in namespace NS, `image` remapped to /cam/image) has a camera's topic."""
    if not camera:
        return "/cam/image" if leaf == "image" else f"{NS}/{leaf}"
    return f"{NS}/{camera}/{leaf}"


class Client:
    """Test-side rclpy node: publishes camera frames + instructions, records masks + results.

    `cameras` names the node's cameras ("" = its single default camera); `compressed` publishes
    sensor_msgs/CompressedImage on <image>/compressed instead of raw frames.
    """

    def __init__(self, domain_id: int, cameras: tuple[str, ...] = ("",), compressed: bool = False) -> None:
        os.environ["ROS_DOMAIN_ID"] = str(domain_id)  # transport settings: tests/conftest.py, set at start
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        from reasonseg_interfaces.msg import SegmentationResult

        self.rclpy, self.Image, self.String, self.CompressedImage = rclpy, Image, String, CompressedImage
        self.compressed = compressed
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("reasonseg_test_client", context=self.context)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.lock = threading.Lock()
        self.image_pubs, self.instruction_pubs, self.cam_masks = {}, {}, {}
        self.masks: list = []     # (recv_monotonic, msg), every camera
        self.results: list = []
        self.output_subs: list = []  # mask and result per camera: matched before a test sends frames
        for cam in cameras:
            if compressed:
                self.image_pubs[cam] = self.node.create_publisher(
                    CompressedImage, camera_topic(cam, "image") + "/compressed", qos_profile_sensor_data)
            else:
                self.image_pubs[cam] = self.node.create_publisher(Image, camera_topic(cam, "image"),
                                                                  qos_profile_sensor_data)
            self.instruction_pubs[cam] = self.node.create_publisher(String, camera_topic(cam, "instruction"), latched)
            self.cam_masks[cam] = []
            self.output_subs += [
                self.node.create_subscription(Image, camera_topic(cam, "mask"),
                                              lambda m, cam=cam: self._rec(self.masks, m, self.cam_masks[cam]), 10),
                self.node.create_subscription(SegmentationResult, camera_topic(cam, "result"),
                                              lambda m: self._rec(self.results, m), 10)]
        first = cameras[0]
        self.pub_image, self.pub_instruction = self.image_pubs[first], self.instruction_pubs[first]
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._running = True
        self._spin.start()

    def _spin_loop(self) -> None:
        while self._running:
            self.executor.spin_once(timeout_sec=0.05)

    def watch_diagnostics(self) -> None:
        """Record /diagnostics in `self.diagnostics` as (arrival, DiagnosticArray)."""
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self._rec(self.diagnostics, m), 10)

    def _rec(self, store: list, msg, also: list | None = None) -> None:
        with self.lock:
            store.append((time.monotonic(), msg))
            if also is not None:
                also.append((time.monotonic(), msg))

    def wait_for(self, cond, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.05)
        return False

    def results_of(self, pipeline: str, valid_only: bool = False) -> list:
        """Result messages the named pipeline produced so far (optionally only those that found the target)."""
        with self.lock:
            return [m for _, m in self.results if m.pipeline == pipeline and (m.valid or not valid_only)]

    def pump(self, bgr: np.ndarray, until, timeout: float = 60.0, period: float = 0.3) -> bool:
        """Publish frames of `bgr` until `until()` holds or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.send(bgr, time.time_ns())
            self.wait_for(until, period)
        return until()

    def stream(self, bgr: np.ndarray, seconds: float, period: float = 0.2) -> None:
        """Publish frames of `bgr` every `period` s for `seconds`, as a camera that waits for nobody."""
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            self.send(bgr, time.time_ns())
            time.sleep(period)

    def wait_node_ready(self, proc: subprocess.Popen, timeout: float = 120.0) -> None:
        subscribed = lambda: all(p.get_subscription_count() > 0 for p in self.image_pubs.values())  # noqa: E731
        ok = self.wait_for(lambda: subscribed() or proc.poll() is not None, timeout)
        assert ok and proc.poll() is None, "reasonseg_node did not subscribe to the camera topic(s)"
        # Each output endpoint matches on its own: a mask published before its subscription matched is lost
        # (volatile), though the result of the same frame arrives. Wait for every match, not the graph's word.
        assert self.wait_for(lambda: all(sub.get_publisher_count() > 0 for sub in self.output_subs), 30), \
            "the node's mask / result publishers did not match this client"

    def instruct(self, text: str, camera: str | None = None) -> None:
        pub = self.pub_instruction if camera is None else self.instruction_pubs[camera]
        pub.publish(self.String(data=text))

    def send(self, bgr: np.ndarray, stamp_ns: int, frame_id: str = "cam", camera: str | None = None):
        pub = self.pub_image if camera is None else self.image_pubs[camera]
        if self.compressed:
            import cv2

            msg = self.CompressedImage(format="bgr8; jpeg compressed bgr8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = frame_id
            msg.data = cv2.imencode(".jpg", bgr)[1].tobytes()
        else:
            msg = bgr_image_msg(self.Image, bgr, stamp_ns, frame_id)
        pub.publish(msg)
        return msg

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """Call a service of the node and wait for the answer."""
        cli = self.node.create_client(srv_type, name)
        try:
            assert cli.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            future = cli.call_async(request)
            assert self.wait_for(future.done, timeout), f"service {name} did not answer"
            return future.result()
        finally:
            self.node.destroy_client(cli)

    def clear(self) -> None:
        with self.lock:
            self.masks.clear()
            self.results.clear()
            for store in self.cam_masks.values():
                store.clear()

    def close(self) -> None:
        self._running = False
        self._spin.join(2)
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def mask_array(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width] > 127


def shipped_params(tmp_path: Path, edit) -> Path:
    """A copy of the shipped driving.yaml, changed by `edit(ros__parameters dict)`, keyed as shipped."""
    import yaml

    from reasonseg_perception.launch_runner import bringup_share

    data = yaml.safe_load((bringup_share() / "config" / "driving.yaml").read_text())
    (section,) = data.values()
    edit(section["ros__parameters"])
    path = tmp_path / f"params-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def log_lines(log: Path, needle: str) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if needle in line]


__all__ = ["Client", "camera_topic", "start_node", "stop_node", "unique_domain_id", "use_ros_transport", "stamp_of", "mask_array",
           "log_lines", "shipped_params", "rss_mb"]
