"""Cross-process round trip of reasonseg_interfaces/msg/SegmentationResult.

A publisher runs in a separate venv python process (sys.executable); the test
itself subscribes.  Both use a private ROS_DOMAIN_ID and localhost-only
discovery.  Needs the interface package built into the venv:
    scripts/build_interfaces.sh .venv
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")

try:
    from reasonseg_interfaces.msg import SegmentationResult
except ImportError as exc:  # rclpy present but interfaces not built: that's a failure
    pytest.fail(
        f"reasonseg_interfaces not importable ({exc}); run scripts/build_interfaces.sh <venv>",
        pytrace=False,
    )

TOPIC = "/reasonseg_test/result"
TIMEOUT_S = 30.0

# Values chosen to be exact in float32 so equality is strict.
SENT = dict(
    stamp_sec=1_700_000_123,
    stamp_nanosec=456_789,
    frame_id="camera_color_optical_frame",
    instruction="segment the red mug left of the laptop",
    labels=["mug", "cup"],
    score=0.875,
    box=[12.5, 34.25, 220.0, 310.75],
    valid=True,
    pipeline="refine",
    grounding_source="local_fallback (llm timeout)",
    reasoning="leftmost red cup-like object next to the laptop",
    grounding_age_s=0.25,
    latency_ms=41.5,
    stage_names=["detect", "ground", "segment", "publish"],
    stage_ms=[10.5, 20.25, 8.125, 0.0625],
)

PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    import rclpy
    from rclpy.context import Context
    from reasonseg_interfaces.msg import SegmentationResult

    topic, domain_id, timeout_s, sent = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node("reasonseg_test_pub", context=ctx)
    pub = node.create_publisher(SegmentationResult, topic, 10)
    m = SegmentationResult()
    m.header.stamp.sec = sent["stamp_sec"]
    m.header.stamp.nanosec = sent["stamp_nanosec"]
    m.header.frame_id = sent["frame_id"]
    for k in ("instruction", "labels", "score", "box", "valid", "pipeline", "grounding_source",
              "reasoning", "grounding_age_s", "latency_ms", "stage_names", "stage_ms"):
        setattr(m, k, sent[k])
    deadline = time.monotonic() + timeout_s
    while pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print("publisher: no subscriber matched", file=sys.stderr, flush=True)
            sys.exit(2)
        time.sleep(0.02)
    print("publisher: subscriber matched", flush=True)
    # keep publishing until the test has what it needs and stops us
    while time.monotonic() < deadline:
        pub.publish(m)
        time.sleep(0.1)
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    """
)


def _domain_id() -> int:
    # valid, private and per-run: 1..100 (0 is the default domain, avoid it)
    return os.getpid() % 100 + 1


def test_segmentation_result_cross_process_round_trip(monkeypatch):

    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    domain_id = _domain_id()
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))

    child_env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, TOPIC, str(domain_id), str(TIMEOUT_S), json.dumps(SENT)],
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    node = rclpy.create_node("reasonseg_test_sub", context=ctx)
    received = []
    node.create_subscription(SegmentationResult, TOPIC, received.append, 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not received and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        if proc.poll() is None:
            proc.terminate()
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()

    assert received, f"no message within {TIMEOUT_S}s (publisher rc={proc.returncode})\nstdout:\n{out}\nstderr:\n{err}"
    m = received[0]
    assert m.header.stamp.sec == SENT["stamp_sec"]
    assert m.header.stamp.nanosec == SENT["stamp_nanosec"]
    assert m.header.frame_id == SENT["frame_id"]
    assert m.instruction == SENT["instruction"]
    assert list(m.labels) == SENT["labels"]
    assert m.score == SENT["score"]
    assert [float(v) for v in m.box] == SENT["box"]
    assert len(m.box) == 4
    assert m.valid is SENT["valid"]
    assert m.pipeline == SENT["pipeline"]
    assert m.grounding_source == SENT["grounding_source"]
    assert m.reasoning == SENT["reasoning"]
    assert m.grounding_age_s == SENT["grounding_age_s"]
    assert m.latency_ms == SENT["latency_ms"]
    assert list(m.stage_names) == SENT["stage_names"]
    assert [float(v) for v in m.stage_ms] == SENT["stage_ms"]
