"""reasonseg_node: a managed (lifecycle) node; cameras + instructions in, mask / overlay / result out (DESIGN §6).

Lifecycle: configure = validate parameters and load the models once; activate = subscribe and publish;
deactivate = stop taking frames; cleanup = free the models. With `autostart` (default) the node does
configure + activate itself, so it behaves like a plain node unless a lifecycle manager drives it.
Several cameras share one loaded pipeline; each has its own topics under `<camera>/`.
"""
from __future__ import annotations

import copy
import logging
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from reasonseg.settings.sections import (Settings, check_domain_id, check_ros_args, check_url_parameters, field_docs,
                              unknown_parameter_warnings)
from reasonseg.core.signals import ignore_further_signals
from reasonseg.core.errors import ConfigError, InputError, ReasonSegError
from reasonseg.core.image_codec import check_image_layout, decode_compressed
from reasonseg.core.model_text import clean_model_text
from reasonseg.pipelines.registry import build_pipeline
from reasonseg.core.render import render_overlay
from reasonseg.runtime.backoff import RetryState
from reasonseg.runtime.engine import Camera, EngineOutput, Frame, PerceptionEngine
from reasonseg.runtime.health import HealthRater, StreamSnapshot, frame_latency_ms
from reasonseg.runtime.memory import release_freed_memory
from reasonseg_interfaces.msg import SegmentationResult
from reasonseg_interfaces.srv import SetInstruction

from .msg_convert import array_to_image, detections_msg, image_to_rgb, vision_msgs_available

INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# Sensor data, depth 1: a frame that waits behind a newer one is worthless (DESIGN §6).
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
# Services keep every request until it is answered: the default depth of 10 silently drops calls beyond it when
# many arrive at once (30 concurrent set_instruction calls got 10-14 answers). Each call is answered in microseconds.
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
_LEVEL = {0: DiagnosticStatus.OK, 1: DiagnosticStatus.WARN, 2: DiagnosticStatus.ERROR}


class _RosLogHandler(logging.Handler):
    """Library logs (reasonseg.*) go to a ROS logger, one line each.

    rclpy fixes a log call site's severity on first use and raises if a later call from the same
    site has another ("Logger severity cannot be changed between calls"), so each severity has its
    own call below. A log sink must never raise into the code that logs.
    """

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self._log = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.levelno >= logging.ERROR:
                self._log.error(msg)
            elif record.levelno >= logging.WARNING:
                self._log.warning(msg)
            elif record.levelno >= logging.INFO:
                self._log.info(msg)
            else:
                self._log.debug(msg)
        except Exception:  # e.g. the logger torn down at shutdown
            pass


def route_library_logs(logger: Any) -> None:
    """Once per process: reasonseg's Python logs to `logger` (several nodes must not duplicate lines)."""
    lib = logging.getLogger("reasonseg")
    if not any(isinstance(h, _RosLogHandler) for h in lib.handlers):
        lib.addHandler(_RosLogHandler(logger))
        lib.setLevel(logging.INFO)


@dataclass
class _CameraIO:
    """The ROS side of one camera: topics, publishers, counters for diagnostics."""

    cam: Camera
    health: HealthRater
    pubs: dict[str, Any] = field(default_factory=dict)
    subs: list = field(default_factory=list)
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=300))
    stage_ms: dict[str, deque] = field(default_factory=dict)
    overhead_s: float = 0.0
    compute_s: float = 0.0
    active_since: float = 0.0
    off_clock_said: bool = False  # frame stamps not on the node's clock: said once per camera


class ReasonSegNode(LifecycleNode):
    """Options come as arguments (name, namespace, parameter_overrides, context, cli_args), so several
    nodes can live in one process and in tests."""

    def __init__(self, node_name: str = "reasonseg", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        route_library_logs(rclpy.logging.get_logger(self.get_logger().name))
        self.settings: Settings | None = None
        self.startup_error: str | None = None  # why configure failed, one line
        self.engine: PerceptionEngine | None = None
        self._io: dict[str, _CameraIO] = {}
        self._service_handles: list = []
        self._diag_pub = None
        self._diag_timer = None
        self._qos: dict[tuple[str, str], QoSProfile] = {}  # effective QoS after qos_overrides, per entity
        self._shared_sub = None
        self._lock = threading.Lock()
        self._last_warn = ("", 0.0)
        self._active = False
        # last: a refused parameter raises here, and the context may still destroy this node at shutdown
        self._declare_parameters()
        self.autostart = self._checked_autostart()

    # -- parameters --------------------------------------------------------------------------------
    def _declare_parameters(self) -> None:
        # Before any is declared: a declared value is readable over DDS (get_parameters, /parameter_events)
        check_url_parameters({name: p.value for name, p in getattr(self, "_parameter_overrides", {}).items()})
        docs = field_docs()
        for name, default in Settings().flat().items():
            try:
                self.declare_parameter(name, default, ParameterDescriptor(description=docs.get(name, ""),
                                                                          read_only=True))
            except ParameterException as exc:  # e.g. a string given for an integer parameter
                raise ConfigError(f"parameter {name}: {' '.join(str(exc).split())[:200]}") from None

    def _checked_autostart(self) -> bool:
        value = self.get_parameter("autostart").value
        return Settings.from_flat({"autostart": value}).autostart

    def _read_settings(self) -> Settings:
        values = {name: self.get_parameter(name).value for name in Settings().flat()}
        settings = Settings.from_flat(values)
        # rclpy keeps the names given by YAML / -p in _parameter_overrides (no public accessor)
        for line in unknown_parameter_warnings(getattr(self, "_parameter_overrides", {}), values):
            self.get_logger().warning(line)
        return settings

    # -- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            settings = self._read_settings()
            pipeline = build_pipeline(settings)
        except ReasonSegError as exc:  # ConfigError, ModelCacheError: one line, stay unconfigured
            self.startup_error = str(exc)
            if not self.autostart:  # with autostart, main() prints it and exits 2
                self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.settings, self.startup_error = settings, None
        self.engine = PerceptionEngine(pipeline, settings.runtime, on_error=self._warn)
        for name in settings.cameras:
            io = _CameraIO(self.engine.add_camera(name, self._publish), HealthRater(settings.diagnostics))
            io.pubs = {"mask": self._publisher(Image, _topic(name, "mask")),
                       "overlay": self._publisher(Image, _topic(name, "overlay")),
                       "result": self._publisher(SegmentationResult, _topic(name, "result"))}
            if vision_msgs_available():
                from vision_msgs.msg import Detection2DArray

                io.pubs["detections"] = self._publisher(Detection2DArray, _topic(name, "detections"))
            self._io[name] = io
        self._service_handles = [self.create_service(SetInstruction, "~/set_instruction", self._on_set_instruction,
                                                     qos_profile=SERVICE_QOS),
                                 self.create_service(Trigger, "~/clear", self._on_clear, qos_profile=SERVICE_QOS)]
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # on the steady clock: with use_sim_time switched on and no /clock (or a paused bag), a timer on ROS time
        # never fires and /diagnostics would go silent exactly when something is wrong
        self._diag_timer = self.create_timer(1.0, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.engine.start()
        self.get_logger().info(f"configured: pipeline={pipeline.name} backend={settings.segmenter.backend} "
                               f"cameras={[c or '(default)' for c in settings.cameras]}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        settings = self.settings
        assert settings is not None
        shared = "instruction"
        for name, io in self._io.items():
            image_topic = self.resolve_topic_name(_topic(name, "image"))  # honours remaps (image:=/camera/...)
            if settings.image_transport == "compressed":
                image_topic += "/compressed"  # image_transport's naming
                io.subs.append(self._subscription(CompressedImage, image_topic, lambda m, io=io: self._on_compressed(io, m),
                                                  IMAGE_QOS))
            else:
                io.subs.append(self._subscription(Image, image_topic, lambda m, io=io: self._on_image(io, m), IMAGE_QOS))
            if not settings.shared_instruction:
                # raw=True: we deserialize ourselves, so a malformed (e.g. non-UTF-8) sample is dropped, not fatal.
                io.subs.append(self._subscription(String, _topic(name, "instruction"),
                                                  lambda raw, cams=(io.cam,): self._on_instruction(cams, raw),
                                                  INSTRUCTION_QOS, raw=True))
            io.active_since = time.monotonic()
        if settings.shared_instruction:
            cams = tuple(io.cam for io in self._io.values())
            self._shared_sub = self._subscription(String, shared, lambda raw: self._on_instruction(cams, raw),
                                                  INSTRUCTION_QOS, raw=True)
        self._active = True
        first = next(iter(self._io))
        self.get_logger().info(f"active: image={self._topic_of(first, 'image')} "
                               f"instruction={self.resolve_topic_name(shared if settings.shared_instruction else _topic(first, 'instruction'))}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_taking_frames()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_taking_frames(self) -> None:
        self._active = False
        for io in self._io.values():
            for sub in io.subs:
                self.destroy_subscription(sub)
            io.subs.clear()
        if self._shared_sub is not None:
            self.destroy_subscription(self._shared_sub)
            self._shared_sub = None
        if self.engine is not None:
            self.engine.discard_frames()

    def _release(self) -> None:
        """Stop the workers and drop the models and every entity configure made. The engine breaks its own
        reference cycles (engine <-> cameras <-> this node's callbacks), so the old pipeline is freed here, not at
        some later full garbage collection (which a long-lived node runs rarely: ~50 MB per cycle were kept),
        and its memory goes back to the system before the next configure loads the models again."""
        self._stop_taking_frames()
        if self.engine is not None:
            self.engine.close()
        for io in self._io.values():
            for pub in io.pubs.values():
                self.destroy_lifecycle_publisher(pub)
            io.pubs.clear()
        for srv in self._service_handles:
            self.destroy_service(srv)
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
        self._io, self._service_handles, self._diag_timer, self._diag_pub, self.engine = {}, [], None, None, None
        release_freed_memory()

    # -- entities with qos_overrides -----------------------------------------------------------------
    def _publisher(self, msg_type: Any, topic: str):
        return self._with_qos("publisher", topic, OUTPUT_QOS, lambda qos, opts: self.create_lifecycle_publisher(
            msg_type, topic, qos, qos_overriding_options=opts))

    def _subscription(self, msg_type: Any, topic: str, callback, qos: QoSProfile, raw: bool = False):
        return self._with_qos("subscription", topic, qos, lambda q, opts: self.create_subscription(
            msg_type, topic, callback, q, qos_overriding_options=opts, raw=raw))

    def _with_qos(self, kind: str, topic: str, default: QoSProfile, make):
        """ROS's standard `qos_overrides.<topic>.<kind>.<policy>` parameters apply; they are declared
        once, so an entity made again after deactivate/cleanup reuses the effective profile."""
        key = (kind, self.resolve_topic_name(topic))
        if key in self._qos:
            return make(self._qos[key], None)
        # a copy: rclpy writes the overridden policies into the profile it is given
        entity = make(copy.copy(default), QoSOverridingOptions.with_default_policies())
        self._qos[key] = entity.qos_profile
        return entity

    def _topic_of(self, camera: str, leaf: str) -> str:
        return self.resolve_topic_name(_topic(camera, leaf))

    # -- inputs ------------------------------------------------------------------------------------
    def _on_image(self, io: _CameraIO, msg: Image) -> None:
        t0 = time.perf_counter()
        rt = self.settings.runtime
        try:
            check_image_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                               max_pixels=rt.max_image_pixels, max_aspect=rt.max_aspect_ratio)
        except InputError as exc:
            self._reject(io, f"dropped image: {exc}")
            return
        decode = lambda: self._timed(io, lambda: image_to_rgb(msg, rt.max_image_pixels, rt.max_aspect_ratio))  # noqa: E731
        self._submit(io, msg.header, decode, t0)

    def _on_compressed(self, io: _CameraIO, msg: CompressedImage) -> None:
        t0 = time.perf_counter()
        rt = self.settings.runtime
        if not msg.data:
            self._reject(io, "dropped image: compressed image has no data")
            return
        # decoded on the worker, only if taken: a bad JPEG/PNG is reported there with one line
        decode = lambda: self._timed(io, lambda: decode_compressed(  # noqa: E731
            bytes(msg.data), msg.format, max_pixels=rt.max_image_pixels, max_aspect=rt.max_aspect_ratio))
        self._submit(io, msg.header, decode, t0)

    def _submit(self, io: _CameraIO, header: Any, decode, t0: float) -> None:
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        io.cam.submit(Frame(decode, stamp_ns, header.frame_id, header, self.get_clock().now().nanoseconds))
        with self._lock:
            io.overhead_s += time.perf_counter() - t0

    def _timed(self, io: _CameraIO, fn):
        """Decoding runs on the worker for the frame it takes; counted as node overhead."""
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            with self._lock:
                io.overhead_s += time.perf_counter() - t0

    def _reject(self, io: _CameraIO, text: str) -> None:
        io.cam.reject(text)
        self._warn(f"[{io.cam.name}] {text}" if io.cam.name else text)

    def _on_instruction(self, cams: tuple[Camera, ...], raw: bytes) -> None:
        try:
            text = deserialize_message(raw, String).data
        except Exception as exc:  # rclpy raises various types for malformed CDR / invalid UTF-8
            self._warn(f"dropped instruction: cannot deserialize ({type(exc).__name__}: not valid UTF-8 CDR?)")
            return
        for cam in cams:
            try:
                cam.set_instruction(text, self.settings.runtime.max_instruction_chars)
            except InputError as exc:
                self._warn(f"dropped instruction: {exc}")
                return

    def _on_set_instruction(self, req: SetInstruction.Request, resp: SetInstruction.Response):
        cams = [io.cam for name, io in self._io.items() if req.camera in ("", name)]
        resp.accepted = False
        if not cams:
            resp.reason = f"unknown camera {req.camera!r} (cameras: {list(self._io)})"
            return resp
        try:
            for cam in cams:
                resp.instruction = cam.set_instruction(req.instruction, self.settings.runtime.max_instruction_chars)
        except InputError as exc:
            resp.reason = str(exc)
            self._warn(f"set_instruction rejected: {exc}")
            return resp
        resp.accepted = True
        return resp

    def _on_clear(self, req: Trigger.Request, resp: Trigger.Response):
        for io in self._io.values():
            io.cam.clear()
        resp.success, resp.message = True, f"cleared {len(self._io)} camera(s): no masks until the next instruction"
        return resp

    # -- outputs (called from the engine's worker thread) ------------------------------------------
    def _publish(self, out: EngineOutput) -> None:
        if not self.context.ok() or not self._active:
            return  # shutting down or deactivated with a frame in flight: nothing to publish to
        try:
            self._publish_outputs(out)
        except Exception:
            if self.context.ok():
                raise  # a real failure: the engine reports and counts it
            # else the context went away mid-publish: a clean stop, not an error

    def _publish_outputs(self, out: EngineOutput) -> None:
        t0 = time.perf_counter()
        io = self._io[out.camera]
        result, header = out.result, out.frame.header
        io.pubs["mask"].publish(array_to_image(result.mask.astype(np.uint8) * 255, "mono8", header))
        if self.settings.runtime.publish_overlay:
            overlay = render_overlay(out.image, result, out.instruction)
            io.pubs["overlay"].publish(array_to_image(overlay[:, :, ::-1], "bgr8", header))
        msg = SegmentationResult(header=header, camera=out.camera, instruction=out.instruction,
                                 labels=list(result.labels), score=float(result.score), valid=bool(result.valid),
                                 pipeline=result.grounding.pipeline if result.grounding else self.engine.pipeline.name)
        msg.box = [float(v) for v in (result.box or (0.0, 0.0, 0.0, 0.0))]
        msg.instance_labels = [i.label for i in result.instances]
        msg.instance_scores = [float(i.score) for i in result.instances]
        msg.instance_boxes = [float(v) for i in result.instances for v in i.box]
        g = result.grounding
        if g is not None:
            msg.grounding_source = g.source
            msg.reasoning = f"{g.reasoning}; {result.note}" if result.note else g.reasoning
        msg.grounding_age_s = float(out.grounding_age_s)
        if "detections" in io.pubs:
            io.pubs["detections"].publish(detections_msg(header, result.instances))
        publish_overhead = (time.perf_counter() - t0) * 1e3
        now, frame = self.get_clock().now().nanoseconds, out.frame
        latency, from_stamp = frame_latency_ms(now, frame.stamp_ns, frame.arrived_ns or now)
        if not from_stamp and not io.off_clock_said:
            io.off_clock_said = True
            skew = (frame.arrived_ns - frame.stamp_ns) / 1e9
            self._warn(f"{f'[{io.cam.name}] ' if io.cam.name else ''}frame stamps are {abs(skew):.0f} s "
                       f"{'behind' if skew > 0 else 'ahead of'} this node's clock (unstamped frames, a sensor's "
                       "own clock, or a bag replayed without use_sim_time): latency is measured from arrival")
        msg.latency_ms = float(latency)
        msg.stage_names = list(out.timings_ms) + ["ros_publish"]
        msg.stage_ms = [float(v) for v in out.timings_ms.values()] + [publish_overhead]
        io.pubs["result"].publish(msg)
        with self._lock:  # read by the diagnostics timer on the executor thread
            io.overhead_s += publish_overhead / 1e3
            io.compute_s += sum(out.timings_ms.values()) / 1e3
            io.latency_ms.append(latency)
            for k, v in [*out.timings_ms.items(), ("ros_publish", publish_overhead)]:
                io.stage_ms.setdefault(k, deque(maxlen=300)).append(v)

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        since = lambda t: None if t is None else now - t  # noqa: E731
        for name, io in self._io.items():
            cam, st = io.cam, io.cam.stats
            retry = cam.grounding_backoff.state()
            with self._lock:
                latencies = list(io.latency_ms)
                series = [("latency_ms", latencies), *[(f"stage_{k}_ms", list(v)) for k, v in io.stage_ms.items()]]
                totals = {"ros_overhead_total_s": round(io.overhead_s, 3), "compute_total_s": round(io.compute_s, 3)}
            values: dict[str, Any] = {"instruction": cam.instruction or "", "frames_in": st["frames_in"],
                                      "frames_processed": st["frames_processed"],
                                      "frames_dropped_stale": cam.frames_dropped,
                                      "frames_rejected": st["frames_rejected"], "groundings": st["groundings"],
                                      "grounding_fallbacks": st["grounding_fallbacks"], "errors": st["errors"],
                                      "grounding": _grounding_status(retry),
                                      "grounding_failures_in_row": retry.failures,
                                      "grounding_next_try_s": round(retry.retry_in_s, 1),
                                      "last_reject_reason": cam.last_reject_reason, **totals}
            for key, data in series:
                if data:
                    values[f"median_{key}"] = round(median(data), 2)
            if self._active:
                snap = StreamSnapshot(st["frames_in"], st["frames_rejected"], cam.frames_dropped,
                                      st["frames_processed"], st["errors"], st["consecutive_errors"],
                                      st["grounding_fallbacks"], since(cam.last_frame_at), now - io.active_since,
                                      since_last_usable_s=since(cam.last_usable_at), rejecting=cam.rejecting,
                                      last_reject_reason=cam.last_reject_reason, grounding_failures=retry.failures,
                                      grounding_retry_in_s=retry.retry_in_s)
                level, message = io.health.rate(snap, latencies)
            else:
                level, message = 0, "inactive (lifecycle): not taking frames"
            status = DiagnosticStatus(level=_LEVEL[level], message=message, hardware_id=self.get_namespace(),
                                      name=f"{self.get_name()}: camera {name}" if name else
                                      f"{self.get_name()}: reasonseg pipeline")
            status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
            arr.status.append(status)
        self._diag_pub.publish(arr)

    def _warn(self, text: str) -> None:
        """One line per problem; repeats of the same line are throttled to one per 2 s."""
        now = time.monotonic()
        if text != self._last_warn[0] or now - self._last_warn[1] > 2.0:
            self.get_logger().warning(text)
            self._last_warn = (text, now)

    def destroy_node(self) -> None:
        self._active = False
        if self.engine is not None:  # the workers first: then nothing publishes on destroyed entities
            self.engine.close()
        super().destroy_node()


def _grounding_status(retry: RetryState) -> str:
    if not retry.failures:
        return "ok"
    return (f"failing: {retry.failures} in a row, next try in {retry.retry_in_s:.1f} s"
            + (f" ({clean_model_text(retry.last_error, max_chars=160)})" if retry.last_error else ""))


def _topic(camera: str, leaf: str) -> str:
    return f"{camera}/{leaf}" if camera else leaf


def _one_line(exc: BaseException) -> str:
    """rcl errors end in ', at /path/file.c:123' breadcrumbs: drop them."""
    return re.sub(r",? at /\S+:\d+", "", " ".join(str(exc).split()))[:300]


def main(args: list[str] | None = None) -> int:
    try:
        check_domain_id()
        check_ros_args(sys.argv if args is None else args)
        rclpy.init(args=args)
    except ConfigError as exc:
        print(f"reasonseg_node: {exc}", file=sys.stderr)
        return 2
    except (RCLError, ValueError) as exc:  # bad --ros-args, unreadable or malformed params file
        print(f"reasonseg_node: cannot start: {_one_line(exc)}", file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = ReasonSegNode()
        if node.autostart:
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                if rclpy.ok():  # else a signal ended start-up: a clean stop
                    print(f"reasonseg_node: {node.startup_error}", file=sys.stderr)
                    code = 2
                return code
            node.trigger_activate()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, ReasonSegError) as exc:
        print(f"reasonseg_node: {exc}", file=sys.stderr)
        code = 2
    except Exception as exc:
        if rclpy.ok():  # a real fault; when the context is gone a signal ended start-up: a clean stop
            print(f"reasonseg_node: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            code = 1
    finally:
        ignore_further_signals()
        try:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except (KeyboardInterrupt, ExternalShutdownException):  # a second Ctrl-C while stopping
            pass
        ignore_further_signals()  # again: rclpy's shutdown put back the handlers it had replaced
    return code


if __name__ == "__main__":
    sys.exit(main())
