"""The node as a ROS 2 citizen, each as its own process over DDS: several cameras sharing one model copy,
the managed lifecycle driven through lifecycle_msgs services, compressed input, the instruction services,
per-instance results and QoS overrides."""
from __future__ import annotations

import time

import numpy as np
import pytest

from rosnode_harness import (NS, Client, log_lines, mask_array, rss_mb, shipped_params, stamp_of, start_node,
                             stop_node, unique_domain_id)
from targets import BOXES, mask_in_box

pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")

CAMERAS = {"front": ("dog.jpg", "the dog", "dog"), "left": ("dog.jpg", "the white truck", "truck"),
           "right": ("person.jpg", "the horse", "horse")}


def _stream(client: Client, frames: dict[str, np.ndarray], seconds: float, hz: float = 10.0, until=None) -> None:
    """Every camera at `hz` for `seconds`; with `until`, stop once it holds and fail if it never does."""
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end and not (until and until()):
        t0 = time.monotonic()
        for cam, bgr in frames.items():
            client.send(bgr, time.time_ns(), camera=cam)
        time.sleep(max(0.0, 1.0 / hz - (time.monotonic() - t0)))
    assert until is None or until(), f"no matching output within {seconds} s"


def _last_valid(client: Client, camera: str, instruction: str):
    with client.lock:
        return next((m for _, m in reversed(client.results)
                     if m.camera == camera and m.instruction == instruction and m.valid), None)


def _mask_of(client: Client, camera: str, stamp: int):
    with client.lock:
        return next((m for _, m in client.cam_masks[camera] if stamp_of(m) == stamp), None)


def _run_cameras(tmp_path, photos, load_rgb, cameras: dict, seconds: float) -> tuple[Client, float]:
    """Start a node with `cameras` (one: the default unnamed camera), instruct and stream every camera at
    10 Hz; returns (client with the results of the last `seconds`, node RSS in MB)."""
    plan = cameras if len(cameras) > 1 else {"": next(iter(cameras.values()))}
    domain = unique_domain_id()
    proc, log = start_node(tmp_path, domain, params_file=shipped_params(tmp_path, lambda p: p.update(cameras=list(plan))))
    client = Client(domain, cameras=tuple(plan))
    try:
        client.wait_node_ready(proc)
        for name, (_, text, _) in plan.items():
            client.instruct(text, camera=name)
        frames = {name: load_rgb(photos / photo)[:, :, ::-1].copy() for name, (photo, _, _) in plan.items()}
        _stream(client, frames, 90, until=lambda: all(_last_valid(client, n, spec[1]) for n, spec in plan.items()))
        client.clear()
        _stream(client, frames, seconds)
        time.sleep(1.5)  # the frame in flight
        rss = rss_mb(proc.pid)
        assert "Traceback" not in log.read_text(), log.read_text()[-2000:]
        return client, rss
    finally:
        stop_node(proc)


def test_three_cameras_one_model_copy_fair_and_each_on_its_own_target(tmp_path_factory, photos, load_rgb):
    one, rss_one = _run_cameras(tmp_path_factory.mktemp("one"), photos, load_rgb, {"front": CAMERAS["front"]},
                                seconds=12)
    one.close()
    client, rss_three = _run_cameras(tmp_path_factory.mktemp("three"), photos, load_rgb, CAMERAS, seconds=20)
    try:
        with client.lock:
            counts = {n: sum(1 for _, m in client.results if m.camera == n) for n in CAMERAS}
        total = sum(counts.values())
        assert total >= 6 and all(c >= 0.25 * total for c in counts.values()), f"a camera starved: {counts}"
        for name, (photo, text, target) in CAMERAS.items():
            result = _last_valid(client, name, text)
            assert result is not None and list(result.labels) == [target], (name, result)
            assert list(result.instance_labels) == [target] and len(result.instance_boxes) == 4
            mask = _mask_of(client, name, stamp_of(result))
            assert mask is not None
            mask_in_box(mask_array(mask), BOXES[(photo, target)])
        assert rss_three < 1.3 * rss_one, f"RSS {rss_three:.0f} MB with 3 cameras vs {rss_one:.0f} MB with one"
    finally:
        client.close()


@pytest.fixture(scope="module")
def managed(tmp_path_factory, photos, load_rgb):
    """A node that waits for a lifecycle manager (autostart: false), with compressed input, a QoS override
    on its mask publisher, and a 2 s no-frame limit for diagnostics."""
    tmp = tmp_path_factory.mktemp("managed")
    domain = unique_domain_id()

    def edit(p: dict) -> None:
        p.update(autostart=False, image_transport="compressed")
        p["diagnostics"]["no_frame_s"] = 2.0
        p["runtime"]["reground_period_s"] = 0.0

    proc, log = start_node(tmp, domain, f"qos_overrides.{NS}/overlay.publisher.reliability:=best_effort",
                           params_file=shipped_params(tmp, edit))
    client = Client(domain, compressed=True)
    client.watch_diagnostics()
    try:
        yield client, proc, log, load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
    finally:
        client.close()
        stop_node(proc)


def _lifecycle(client: Client, transition: str | None = None) -> str:
    """Drive the node through the standard lifecycle_msgs services; returns the state label afterwards."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    node = f"{NS}/reasonseg"
    if transition is not None:
        req = ChangeState.Request()
        req.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
        assert client.call(ChangeState, f"{node}/change_state", req, timeout=120).success, transition
    return client.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label


def _diag_after(client: Client, t0: float, cond, timeout: float = 10.0):
    def found():
        with client.lock:
            return next((m.status[0] for t, m in client.diagnostics if t > t0 and cond(m.status[0])), None)

    assert client.wait_for(lambda: found() is not None, timeout), "no matching /diagnostics status"
    return found()


def test_lifecycle_transitions_over_standard_services(managed):
    from diagnostic_msgs.msg import DiagnosticStatus

    client, proc, log, bgr = managed
    assert client.wait_for(lambda: client.node.count_subscribers(f"{NS}/instruction") == 0, 1)
    assert _lifecycle(client) == "unconfigured"  # autostart false: nothing loaded yet
    assert _lifecycle(client, "configure") == "inactive"
    client.instruct("the dog")
    for _ in range(10):  # inactive: frames are not taken
        client.send(bgr, time.time_ns())
        time.sleep(0.1)
    assert client.results == [] and client.pub_image.get_subscription_count() == 0
    assert _lifecycle(client, "activate") == "active"
    assert client.wait_for(lambda: client.pub_image.get_subscription_count() > 0, 10)
    _stream(client, {"": bgr}, 60, hz=5, until=lambda: _last_valid(client, "", "the dog") is not None)
    assert _lifecycle(client, "deactivate") == "inactive"
    t0 = time.monotonic()
    status = _diag_after(client, t0, lambda s: "inactive" in s.message)
    assert status.level == DiagnosticStatus.OK
    n = len(client.results)
    for _ in range(10):
        client.send(bgr, time.time_ns())
        time.sleep(0.1)
    time.sleep(1.5)
    assert len(client.results) == n, "masks after deactivate"
    assert _lifecycle(client, "cleanup") == "unconfigured"
    # and back: models loaded again, entities made again (QoS override parameters already declared)
    assert _lifecycle(client, "configure") == "inactive"
    assert _lifecycle(client, "activate") == "active"
    client.clear()
    _stream(client, {"": bgr}, 60, hz=5, until=lambda: _last_valid(client, "", "the dog") is not None)
    # no frames for longer than diagnostics.no_frame_s -> ERROR, saying why
    t0 = time.monotonic()
    status = _diag_after(client, t0, lambda s: s.level == DiagnosticStatus.ERROR)
    assert "no frame for" in status.message
    assert "Traceback" not in log.read_text()


def test_compressed_input_services_instances_and_qos_override(managed):
    from rclpy.qos import ReliabilityPolicy
    from std_srvs.srv import Trigger

    from reasonseg_interfaces.srv import SetInstruction

    client, proc, log, bgr = managed
    if _lifecycle(client) != "active":
        if _lifecycle(client) == "unconfigured":
            _lifecycle(client, "configure")
        _lifecycle(client, "activate")
    (overlay,) = client.node.get_publishers_info_by_topic(f"{NS}/overlay")
    assert overlay.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT  # qos_overrides applied
    (mask,) = client.node.get_publishers_info_by_topic(f"{NS}/mask")
    assert mask.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # the others keep the documented default
    srv = f"{NS}/reasonseg/set_instruction"
    for text, reason in (("   ", "empty"), ("\u200b\u200b", "empty"), ("x" * 600, "limit is"),):
        resp = client.call(SetInstruction, srv, SetInstruction.Request(instruction=text))
        assert not resp.accepted and reason in resp.reason, resp
    resp = client.call(SetInstruction, srv, SetInstruction.Request(instruction="the dog", camera="rear"))
    assert not resp.accepted and "unknown camera" in resp.reason
    resp = client.call(SetInstruction, srv, SetInstruction.Request(instruction="  the   white truck "))
    assert resp.accepted and resp.instruction == "the white truck" and resp.reason == ""
    # a corrupt JPEG is dropped with one line, then good JPEG frames are masked on the target
    bad = client.CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg at all" * 20)
    deadline = time.monotonic() + 15
    while not log_lines(log, "cannot decode compressed image") and time.monotonic() < deadline:
        client.image_pubs[""].publish(bad)
        client.wait_for(lambda: bool(log_lines(log, "cannot decode compressed image")), 0.5)
    assert log_lines(log, "cannot decode compressed image"), log.read_text()[-2000:]
    client.clear()
    _stream(client, {"": bgr}, 60, hz=5, until=lambda: _last_valid(client, "", "the white truck") is not None)
    result = _last_valid(client, "", "the white truck")
    assert list(result.instance_labels) == ["truck"] and 0 < result.instance_scores[0] <= 1
    assert list(result.box) == list(result.instance_boxes)  # one instance: the union box is its box
    assert client.wait_for(lambda: _mask_of(client, "", stamp_of(result)) is not None, 5)
    mask_in_box(mask_array(_mask_of(client, "", stamp_of(result))), BOXES[("dog.jpg", "truck")])
    # ~/clear: no masks until the next instruction
    resp = client.call(Trigger, f"{NS}/reasonseg/clear", Trigger.Request())
    assert resp.success
    time.sleep(1.5)  # the frame in flight
    client.clear()
    _stream(client, {"": bgr}, 3.0, hz=5)
    assert client.results == [], "masks after ~/clear"
    resp = client.call(SetInstruction, srv, SetInstruction.Request(instruction="the dog"))
    assert resp.accepted
    _stream(client, {"": bgr}, 60, hz=5, until=lambda: _last_valid(client, "", "the dog") is not None)


def test_detections_published_where_vision_msgs_exists(managed):
    pytest.importorskip("vision_msgs", reason="vision_msgs ships with ROS installs; it has no PyPI wheel")
    from vision_msgs.msg import Detection2DArray

    client, proc, log, bgr = managed
    got = []
    client.node.create_subscription(Detection2DArray, f"{NS}/detections", got.append, 10)
    client.instruct("the dog")
    _stream(client, {"": bgr}, 60, hz=5, until=lambda: bool(got) and any(d.detections for d in got))
    det = next(d for d in got if d.detections).detections[0]
    assert det.results[0].hypothesis.class_id == "dog" and det.bbox.size_x > 0
