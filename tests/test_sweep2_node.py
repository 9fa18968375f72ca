"""reasonseg_node over DDS against issue 29: a failing grounder is asked with a bounded backoff and /diagnostics
says so; rejected frames raise WARN, then ERROR, per camera; every concurrent service call is answered;
/diagnostics keeps coming with use_sim_time switched on; a URL parameter with credentials is refused before it is
readable; cleanup -> configure cycles do not grow the node's memory."""
from __future__ import annotations

import time

import numpy as np
import pytest

from openai_server import OpenAiServer
from rosnode_harness import NS, Client, log_lines, rss_mb, shipped_params, start_node, stop_node, unique_domain_id

pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")

NO_FRAME_S = 2.0
NODE = f"{NS}/reasonseg"


def _statuses(client: Client, camera: str, since: float) -> list:
    """(arrival, status) of one camera's /diagnostics reports after `since`."""
    with client.lock:
        return [(t, s) for t, m in client.diagnostics if t > since for s in m.status
                if s.name.endswith(f"camera {camera}")]


def _values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def _stream(client: Client, frames: dict, seconds: float, hz: float = 10.0, until=None) -> None:
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end and not (until and until()):
        t0 = time.monotonic()
        for cam, frame in frames.items():
            if isinstance(frame, np.ndarray):
                client.send(frame, time.time_ns(), camera=cam)
            else:
                client.image_pubs[cam].publish(frame)
        time.sleep(max(0.0, 1.0 / hz - (time.monotonic() - t0)))
    assert until is None or until(), f"no matching output within {seconds} s"


def _tail(log, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:]


# -- one node: the mllm pipeline on an endpoint that always fails; cameras front and rear, raw frames ----------
@pytest.fixture(scope="module")
def failing_vlm(tmp_path_factory, photos, load_rgb):
    tmp = tmp_path_factory.mktemp("failing_vlm")
    domain = unique_domain_id()
    with OpenAiServer() as vlm:
        vlm.behaviour = "http500"

        def edit(p: dict) -> None:
            p.update(pipeline="mllm", cameras=["front", "rear"])
            p["mllm"].update(backend="openai", model="scripted-vlm", base_url=vlm.base_url)
            p["diagnostics"]["no_frame_s"] = NO_FRAME_S
            p["runtime"]["reground_period_s"] = 0.0

        proc, log = start_node(tmp, domain, params_file=shipped_params(tmp, edit))
        client = Client(domain, cameras=("front", "rear"))
        client.watch_diagnostics()
        try:
            client.wait_node_ready(proc)
            yield client, proc, log, vlm, load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
        finally:
            client.close()
            stop_node(proc)


def test_a_failing_grounder_is_asked_with_backoff_and_diagnostics_say_so(failing_vlm):
    from diagnostic_msgs.msg import DiagnosticStatus

    client, proc, log, vlm, bgr = failing_vlm
    client.instruct("the dog", camera="front")
    _stream(client, {"front": bgr}, 60, until=lambda: len(vlm.requests) >= 1)
    n0 = len(vlm.requests)
    _stream(client, {"front": bgr}, 6.0)  # a 10 Hz camera: one request per frame would be ~60
    asked = len(vlm.requests) - n0
    print(f"{asked} grounding requests in 6 s to an endpoint that always fails")
    assert 1 <= asked <= 5, f"{asked} grounding requests in 6 s to an endpoint that always fails (no backoff)"
    t_now = time.monotonic()
    _stream(client, {"front": bgr}, 5, until=lambda: any(
        int(_values(s).get("grounding_failures_in_row", 0)) >= 3 for _, s in _statuses(client, "front", t_now)))
    _, status = next((t, s) for t, s in _statuses(client, "front", t_now)
                     if int(_values(s)["grounding_failures_in_row"]) >= 3)
    assert status.level in (DiagnosticStatus.WARN, DiagnosticStatus.ERROR), status
    assert "grounding failed" in status.message and "next try in" in status.message, status
    assert _values(status)["grounding"].startswith("failing:") and float(_values(status)["grounding_next_try_s"]) > 0
    # a new instruction is tried at once, its failures counted afresh
    t_new, n_new = time.monotonic(), len(vlm.requests)
    client.instruct("the bicycle", camera="front")
    _stream(client, {"front": bgr}, 10, until=lambda: any(
        _values(s)["instruction"] == "the bicycle" for _, s in _statuses(client, "front", t_new)))
    first = next(s for _, s in _statuses(client, "front", t_new) if _values(s)["instruction"] == "the bicycle")
    assert int(_values(first)["grounding_failures_in_row"]) <= 2, _values(first)
    assert len(vlm.requests) > n_new
    assert "Traceback" not in log.read_text(errors="replace"), _tail(log)


def test_a_raw_camera_sending_only_malformed_frames_is_reported_as_rejected(failing_vlm):
    from diagnostic_msgs.msg import DiagnosticStatus

    client, proc, log, vlm, bgr = failing_vlm
    bad = client.Image(height=4, width=4, encoding="bgr8", step=12, data=bytes(10))  # 10 bytes of 48
    _stream(client, {"front": bgr, "rear": bgr}, 1.5)  # rear works at first
    t0 = time.monotonic()

    def rear_error() -> bool:
        return any(s.level == DiagnosticStatus.ERROR and int(_values(s)["frames_rejected"]) > 0
                   for t, s in _statuses(client, "rear", t0) if t > t0 + NO_FRAME_S)

    # rear: garbage at 30 Hz; front: good frames at 10 Hz
    deadline = time.monotonic() + NO_FRAME_S + 8
    i = 0
    while time.monotonic() < deadline and not rear_error():
        client.image_pubs["rear"].publish(bad)
        if i % 3 == 0:
            client.send(bgr, time.time_ns(), camera="front")
        i += 1
        time.sleep(1 / 30)
    rear = [s for _, s in _statuses(client, "rear", t0) if int(_values(s)["frames_rejected"]) > 0]
    assert rear, "no /diagnostics report counted the rejected frames"
    messages = [f"{s.level}: {s.message}" for s in rear]
    assert any(s.level == DiagnosticStatus.WARN and "frames rejected" in s.message for s in rear), messages
    assert rear_error() and all("frames rejected" in s.message for s in rear if s.level == DiagnosticStatus.ERROR), \
        messages
    assert not any("no frame for" in s.message for s in rear), messages  # they arrive: not silence
    assert "image data has" in _values(rear[-1])["last_reject_reason"], _values(rear[-1])
    front = [s for _, s in _statuses(client, "front", t0)]
    assert front and not any("rejected" in s.message for s in front), [s.message for s in front]


def test_every_concurrent_set_instruction_call_is_answered(failing_vlm):
    from reasonseg_interfaces.srv import SetInstruction
    from reasonseg_perception.node_qos import SERVICE_QOS

    client, proc, log, vlm, bgr = failing_vlm
    # Every client's reply reader sees all 30 replies on the one reply topic (DDS filters by request id after the
    # reader's history): with the default KEEP_LAST 10 a slow client loses its own reply to the others' on a loaded
    # machine. Callers that fire at once keep all (KEEP_ALL), as the node's services do.
    callers = [client.node.create_client(SetInstruction, f"{NODE}/set_instruction", qos_profile=SERVICE_QOS)
               for _ in range(30)]
    try:
        assert all(c.wait_for_service(timeout_sec=30) for c in callers)
        futures = [c.call_async(SetInstruction.Request(instruction=f"the dog number {i}", camera="rear"))
                   for i, c in enumerate(callers)]
        client.wait_for(lambda: all(f.done() for f in futures), 20)
        answered = [f.result() for f in futures if f.done()]
        assert len(answered) == 30, f"{len(answered)} of 30 concurrent calls answered"
        assert all(r.accepted for r in answered), [r.reason for r in answered if not r.accepted]
    finally:
        for c in callers:
            client.node.destroy_client(c)


def test_diagnostics_keep_coming_with_use_sim_time_switched_on(failing_vlm):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client, proc, log, vlm, bgr = failing_vlm
    req = SetParameters.Request(parameters=[Parameter(name="use_sim_time", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=True))])
    assert client.call(SetParameters, f"{NODE}/set_parameters", req).results[0].successful
    t0 = time.monotonic() + 0.5  # no /clock is published: ROS time stands still from here
    time.sleep(4.5)
    with client.lock:
        reports = sum(1 for t, _ in client.diagnostics if t > t0)
    assert reports >= 3, f"{reports} /diagnostics reports in 4 s with use_sim_time on"
    assert proc.poll() is None, _tail(log)


# -- credentials in a URL parameter ----------------------------------------------------------------------------
SECRET = "pa55-in-url"


@pytest.mark.parametrize("source, name", [("params_file", "mllm.base_url"), ("-p", "llm.base_url")])
def test_credentials_in_a_url_parameter_are_refused_and_never_readable(tmp_path, source, name):
    from rcl_interfaces.msg import ParameterEvent
    from rcl_interfaces.srv import GetParameters

    domain = unique_domain_id()
    url = f"http://robot:{SECRET}@127.0.0.1:9/v1"
    section, leaf = name.split(".")
    watcher = Client(domain)
    events: list = []
    watcher.node.create_subscription(ParameterEvent, "/parameter_events", lambda m: watcher._rec(events, m), 1000)
    getter = watcher.node.create_client(GetParameters, f"{NODE}/get_parameters")
    if source == "params_file":  # autostart false: a node that waits for a lifecycle manager would stay up
        params = shipped_params(tmp_path, lambda p: (p.update(autostart=False), p[section].update({leaf: url})))
        proc, log = start_node(tmp_path, domain, params_file=params)
    else:
        proc, log = start_node(tmp_path, domain, f"{name}:={url}")
    answers = []
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline and not answers:
            if getter.service_is_ready():  # the node is up: what does it tell anyone who asks?
                future = getter.call_async(GetParameters.Request(names=[name]))
                if watcher.wait_for(future.done, 10):
                    answers.append(future.result())
            time.sleep(0.1)
        readable = [v.string_value for a in answers for v in a.values]
        assert not any(SECRET in v for v in readable), f"get_parameters gave {readable}"
        assert proc.wait(timeout=60) == 2, _tail(log)
    finally:
        stop_node(proc)
        watcher.close()
    text = log.read_text(errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and name in lines[0] and "credentials" in lines[0] and "OPENAI_API_KEY" in lines[0], text
    assert SECRET not in text, text
    assert not any(SECRET in repr(e) for _, e in events), "a parameter event carried the password"


# -- one managed node with compressed input: garbage on one camera, then cleanup -> configure cycles ----------
def _lifecycle(client: Client, transition: str) -> None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request()
    req.transition.id = getattr(Transition, f"TRANSITION_{transition.upper()}")
    assert client.call(ChangeState, f"{NODE}/change_state", req, timeout=120).success, transition


def _activate(client: Client) -> None:
    """From whatever state the tests before left: configured and active, taking every camera's frames."""
    from lifecycle_msgs.srv import GetState

    state = client.call(GetState, f"{NODE}/get_state", GetState.Request()).current_state.label
    if state == "unconfigured":
        _lifecycle(client, "configure")
    if state != "active":
        _lifecycle(client, "activate")
    assert client.wait_for(lambda: all(p.get_subscription_count() for p in client.image_pubs.values()), 30)


@pytest.fixture(scope="module")
def managed(tmp_path_factory, photos, load_rgb):
    tmp = tmp_path_factory.mktemp("managed_compressed")
    domain = unique_domain_id()

    def edit(p: dict) -> None:
        p.update(autostart=False, image_transport="compressed", cameras=["front", "rear"])
        p["diagnostics"]["no_frame_s"] = NO_FRAME_S

    proc, log = start_node(tmp, domain, params_file=shipped_params(tmp, edit))
    client = Client(domain, cameras=("front", "rear"), compressed=True)
    client.watch_diagnostics()
    try:
        yield client, proc, log, load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
    finally:
        client.close()
        stop_node(proc)


def test_undecodable_compressed_frames_warn_then_error_on_their_camera_only(managed):
    from diagnostic_msgs.msg import DiagnosticStatus

    client, proc, log, bgr = managed
    _activate(client)
    garbage = client.CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg at all" * 20)
    _stream(client, {"front": bgr, "rear": bgr}, 1.5)  # rear works at first
    t0 = time.monotonic()

    def rear_error() -> bool:
        return any(s.level == DiagnosticStatus.ERROR for t, s in _statuses(client, "rear", t0) if t > t0 + NO_FRAME_S)

    deadline, i = time.monotonic() + NO_FRAME_S + 10, 0
    while time.monotonic() < deadline and not rear_error():  # rear: garbage at 30 Hz; front: JPEG at 10 Hz
        client.image_pubs["rear"].publish(garbage)
        if i % 3 == 0:
            client.send(bgr, time.time_ns(), camera="front")
        i += 1
        time.sleep(1 / 30)
    rear = [s for _, s in _statuses(client, "rear", t0)]
    messages = [f"{s.level}: {s.message}" for s in rear]
    assert any(s.level == DiagnosticStatus.WARN and "frames rejected" in s.message for s in rear), messages
    assert rear_error(), f"rear never ERROR with nothing usable for {NO_FRAME_S} s: {messages}"
    errors = [s for s in rear if s.level == DiagnosticStatus.ERROR]
    assert all("frames rejected: no usable frame for" in s.message for s in errors), messages
    assert "cannot decode compressed image" in _values(errors[-1])["last_reject_reason"]
    front = [s for t, s in _statuses(client, "front", t0) if t > t0 + 1.5]
    assert front and all(s.level == DiagnosticStatus.OK for s in front), [s.message for s in front]


CYCLES = 8


def test_cleanup_configure_cycles_keep_memory_flat(managed):
    client, proc, log, bgr = managed
    _activate(client)
    client.instruct("the dog", camera="front")

    def cycle() -> float:
        _lifecycle(client, "deactivate")
        _lifecycle(client, "cleanup")
        _lifecycle(client, "configure")
        _lifecycle(client, "activate")
        assert client.wait_for(lambda: client.image_pubs["front"].get_subscription_count() > 0, 30)
        n = len(client.results)  # the models run in every cycle: their arenas are part of what must be freed
        _stream(client, {"front": bgr}, 60, hz=5, until=lambda: len(client.results) > n)
        return rss_mb(proc.pid)

    for _ in range(2):  # warm-up: lazy imports, allocator pools
        cycle()
    base = rss_mb(proc.pid)
    rss = [cycle() for _ in range(CYCLES)]
    print(f"node RSS over {CYCLES} cleanup -> configure cycles: {base:.0f} -> " + " ".join(f"{r:.0f}" for r in rss))
    # A leak grows with every cycle (58 MB each before the fix); one cycle's transient peak (allocator arenas while
    # the models load, seen once at +176 MB in a full-suite run) goes back down. So: the last cycles stay near base.
    assert min(rss[-3:]) - base <= 40, f"RSS grew {rss[-1] - base:.0f} MB over {CYCLES} cycles: {base:.0f} -> {rss}"
    assert "Traceback" not in log.read_text(errors="replace"), _tail(log)
    assert len(log_lines(log, "configured: pipeline=")) >= CYCLES + 2
