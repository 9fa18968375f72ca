"""reasonseg_node: camera + instruction in, mask / overlay / result out (DESIGN §6)."""
from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections import deque
from statistics import median

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from reasonseg.config import Settings, check_ros_args, field_docs, unknown_parameter_warnings
from reasonseg.errors import ConfigError, InputError, ReasonSegError
from reasonseg.image_codec import check_image_layout
from reasonseg.pipelines import build_pipeline
from reasonseg.render import render_overlay
from reasonseg.runtime.engine import EngineOutput, Frame, PerceptionEngine
from reasonseg_interfaces.msg import SegmentationResult

from .msg_convert import array_to_image, image_to_rgb

INSTRUCTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
# Sensor data, depth 1: a frame that waits behind a newer one is worthless (DESIGN §6).
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)


class _RosLogHandler(logging.Handler):
    """Library logs (reasonseg.*) go to the node's ROS logger, one line each.

    rclpy fixes a log call site's severity on first use and raises if a later call from the same
    site has another ("Logger severity cannot be changed between calls"), so each severity has its
    own call below. A log sink must never raise into the code that logs.
    """

    def __init__(self, node: Node) -> None:
        super().__init__()
        self._log = node.get_logger()

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


class ReasonSegNode(Node):
    def __init__(self) -> None:
        super().__init__("reasonseg")
        logging.getLogger("reasonseg").addHandler(_RosLogHandler(self))
        logging.getLogger("reasonseg").setLevel(logging.INFO)
        self.settings = self._read_parameters()
        pipeline = build_pipeline(self.settings)
        self._overhead_ms: deque[float] = deque(maxlen=300)
        self._latency_ms: deque[float] = deque(maxlen=300)
        self._stage_ms: dict[str, deque[float]] = {}
        self._last_warn = ("", 0.0)
        self._diag_seen = {"errors": 0, "grounding_fallbacks": 0}
        # node's own cost (image conversion + publishing) against pipeline compute, for the benchmark
        self._overhead_total_s = 0.0
        self._compute_total_s = 0.0
        self._stats_lock = threading.Lock()
        self.engine = PerceptionEngine(pipeline, self.settings.runtime, self._publish, on_error=self._warn)
        self.pub_mask = self.create_publisher(Image, "mask", OUTPUT_QOS)
        self.pub_overlay = self.create_publisher(Image, "overlay", OUTPUT_QOS)
        self.pub_result = self.create_publisher(SegmentationResult, "result", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(Image, "image", self._on_image, IMAGE_QOS)
        # raw=True: we deserialize ourselves, so a malformed (e.g. non-UTF-8) sample is dropped, not fatal.
        self.create_subscription(String, "instruction", self._on_instruction, INSTRUCTION_QOS, raw=True)
        self.create_timer(1.0, self._publish_diagnostics)
        self.engine.start()
        self.get_logger().info(f"ready: pipeline={pipeline.name} backend={self.settings.segmenter.backend} "
                               f"image={self.resolve_topic_name('image')} "
                               f"instruction={self.resolve_topic_name('instruction')}")

    def _read_parameters(self) -> Settings:
        docs = field_docs()
        for name, default in Settings().flat().items():
            try:
                self.declare_parameter(name, default, ParameterDescriptor(description=docs.get(name, ""),
                                                                          read_only=True))
            except ParameterException as exc:  # e.g. a string given for an integer parameter
                raise ConfigError(f"parameter {name}: {' '.join(str(exc).split())[:200]}") from None
        values = {name: self.get_parameter(name).value for name in Settings().flat()}
        settings = Settings.from_flat(values)  # ConfigError -> main() prints one line and exits 2
        # rclpy keeps the names given by YAML / -p in _parameter_overrides (no public accessor)
        for line in unknown_parameter_warnings(getattr(self, "_parameter_overrides", {}), values):
            self.get_logger().warning(line)
        return settings

    # -- inputs ----------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        t0 = time.perf_counter()
        rt = self.settings.runtime
        try:
            check_image_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                               max_pixels=rt.max_image_pixels, max_aspect=rt.max_aspect_ratio)
        except InputError as exc:
            self._warn(f"dropped image: {exc}")
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.engine.submit(Frame(lambda: self._decode(msg), stamp_ns, msg.header.frame_id, msg.header))
        dt = time.perf_counter() - t0
        with self._stats_lock:
            self._overhead_ms.append(dt * 1e3)
            self._overhead_total_s += dt

    def _decode(self, msg: Image) -> np.ndarray:
        """Runs on the worker, only for the frame it takes; counted as node overhead."""
        t0 = time.perf_counter()
        try:
            return image_to_rgb(msg, self.settings.runtime.max_image_pixels, self.settings.runtime.max_aspect_ratio)
        finally:
            with self._stats_lock:
                self._overhead_total_s += time.perf_counter() - t0

    def _on_instruction(self, raw: bytes) -> None:
        try:
            text = deserialize_message(raw, String).data
        except Exception as exc:  # rclpy raises various types for malformed CDR / invalid UTF-8
            self._warn(f"dropped instruction: cannot deserialize ({type(exc).__name__}: not valid UTF-8 CDR?)")
            return
        try:
            self.engine.set_instruction(text, self.settings.runtime.max_instruction_chars)
        except InputError as exc:
            self._warn(f"dropped instruction: {exc}")

    # -- outputs (called from the engine's worker thread) ----------------------------------------
    def _publish(self, out: EngineOutput) -> None:
        if not self.context.ok():
            return  # shutting down (SIGINT/SIGTERM with a frame in flight): nothing to publish to
        try:
            self._publish_outputs(out)
        except Exception:
            if self.context.ok():
                raise  # a real failure: the engine reports and counts it
            # else the context went away mid-publish: a clean stop, not an error

    def _publish_outputs(self, out: EngineOutput) -> None:
        t0 = time.perf_counter()
        result, header = out.result, out.frame.header
        mask_u8 = result.mask.astype(np.uint8) * 255
        self.pub_mask.publish(array_to_image(mask_u8, "mono8", header))
        if self.settings.runtime.publish_overlay:
            overlay = render_overlay(out.image, result, out.instruction)
            self.pub_overlay.publish(array_to_image(overlay[:, :, ::-1], "bgr8", header))
        msg = SegmentationResult(header=header, instruction=out.instruction, labels=list(result.labels),
                                 score=float(result.score), valid=bool(result.valid), pipeline=self.engine.pipeline.name)
        msg.box = [float(v) for v in (result.box or (0.0, 0.0, 0.0, 0.0))]
        g = result.grounding
        if g is not None:
            msg.grounding_source = g.source
            msg.reasoning = f"{g.reasoning}; {result.note}" if result.note else g.reasoning
        msg.grounding_age_s = float(out.grounding_age_s)
        publish_overhead = (time.perf_counter() - t0) * 1e3
        latency = (self.get_clock().now().nanoseconds - out.frame.stamp_ns) / 1e6
        msg.latency_ms = float(latency)
        msg.stage_names = list(out.timings_ms) + ["ros_publish"]
        msg.stage_ms = [float(v) for v in out.timings_ms.values()] + [publish_overhead]
        self.pub_result.publish(msg)
        with self._stats_lock:  # read by the diagnostics timer on the executor thread
            self._overhead_ms.append(publish_overhead)
            self._overhead_total_s += publish_overhead / 1e3
            self._compute_total_s += sum(out.timings_ms.values()) / 1e3
            self._latency_ms.append(latency)
            for k, v in out.timings_ms.items():
                self._stage_ms.setdefault(k, deque(maxlen=300)).append(v)

    def _publish_diagnostics(self) -> None:
        stats = self.engine.stats
        values = {"instruction": self.engine.instruction or "", "frames_in": stats["frames_in"],
                  "frames_processed": stats["frames_processed"], "frames_dropped_stale": self.engine.frames_dropped,
                  "groundings": stats["groundings"], "grounding_fallbacks": stats["grounding_fallbacks"],
                  "errors": stats["errors"]}
        with self._stats_lock:
            series = [("latency_ms", list(self._latency_ms)), ("ros_overhead_ms", list(self._overhead_ms)),
                      *[(f"stage_{k}_ms", list(v)) for k, v in self._stage_ms.items()]]
            values["ros_overhead_total_s"] = round(self._overhead_total_s, 3)
            values["compute_total_s"] = round(self._compute_total_s, 3)
        for name, data in series:
            if data:
                values[f"median_{name}"] = round(median(data), 2)
        level, message = DiagnosticStatus.OK, f"{stats['frames_processed']} masks"
        new_errors = stats["errors"] - self._diag_seen["errors"]
        new_fallbacks = stats["grounding_fallbacks"] - self._diag_seen["grounding_fallbacks"]
        if new_errors or new_fallbacks:  # something went wrong since the last report
            level = DiagnosticStatus.WARN
            message += f"; {new_errors} new errors, {new_fallbacks} LLM fallbacks"
        self._diag_seen = {k: stats[k] for k in self._diag_seen}
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: reasonseg pipeline",
                                  message=message, hardware_id=self.get_namespace())
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(arr)

    def _warn(self, text: str) -> None:
        """One line per problem; repeats of the same line are throttled to one per 2 s."""
        now = time.monotonic()
        if text != self._last_warn[0] or now - self._last_warn[1] > 2.0:
            self.get_logger().warning(text)
            self._last_warn = (text, now)

    def destroy_node(self) -> None:
        self.engine.stop()
        super().destroy_node()


def _one_line(exc: BaseException) -> str:
    """rcl errors end in ', at /path/file.c:123' breadcrumbs: drop them."""
    return re.sub(r",? at /\S+:\d+", "", " ".join(str(exc).split()))[:300]


def main(args: list[str] | None = None) -> int:
    try:
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
        try:
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
        except (KeyboardInterrupt, ExternalShutdownException):  # a second Ctrl-C while stopping
            pass
    return code
if __name__ == "__main__":
    sys.exit(main())
