"""The ROS side of one camera: its output topics, frames in (checked at once, decoded on the engine's worker),
outputs out, and the time the node spends on them (for /diagnostics). The node makes and destroys the publishers
and subscriptions."""
from __future__ import annotations

import time
from typing import Any, Callable

from reasonseg_interfaces.msg import SegmentationResult
from sensor_msgs.msg import CompressedImage, Image

from reasonseg.core.errors import InputError
from reasonseg.core.image_codec import check_image_layout, decode_compressed
from reasonseg.core.settings import RuntimeSettings
from reasonseg.runtime.engine import Camera, EngineOutput, Frame
from reasonseg.runtime.health import HealthRater, frame_latency_ms

from .message_building import mask_image, off_clock_warning, overlay_image, result_message, set_timings
from .msg_convert import detections_msg, image_to_rgb, vision_msgs_available
from .node_diagnostics import FrameTimes


def camera_topic(camera: str, leaf: str) -> str:
    """A camera's topics are under `<camera>/`; the default (unnamed) camera's at the node's namespace."""
    return f"{camera}/{leaf}" if camera else leaf


def output_types() -> dict[str, Any]:
    """Each output's topic leaf and message type; detections only where vision_msgs is installed."""
    types: dict[str, Any] = {"mask": Image, "overlay": Image, "result": SegmentationResult}
    if vision_msgs_available():
        from vision_msgs.msg import Detection2DArray

        types["detections"] = Detection2DArray
    return types


class CameraIO:
    """`now_ns`: the node's clock; `warn`: the node's throttled warning; `pipeline`: the engine's pipeline name."""

    def __init__(self, cam: Camera, health: HealthRater, runtime: RuntimeSettings, pipeline: str,
                 now_ns: Callable[[], int], warn: Callable[[str], None]) -> None:
        self.cam = cam
        self.health = health
        self.pubs: dict[str, Any] = {}
        self.subs: list = []
        self.times = FrameTimes()
        self.active_since = 0.0
        self._rt, self._pipeline, self._now_ns, self._warn = runtime, pipeline, now_ns, warn
        self._off_clock_said = False  # frame stamps not on the node's clock: said once per camera

    # -- inputs (subscription callbacks) -----------------------------------------------------------
    def on_image(self, msg: Image) -> None:
        t0 = time.perf_counter()
        rt = self._rt
        try:
            check_image_layout(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                               max_pixels=rt.max_image_pixels, max_aspect=rt.max_aspect_ratio)
        except InputError as exc:
            self._reject(f"dropped image: {exc}")
            return
        decode = lambda: self._timed(lambda: image_to_rgb(msg, rt.max_image_pixels, rt.max_aspect_ratio))  # noqa: E731
        self._submit(msg.header, decode, t0)

    def on_compressed(self, msg: CompressedImage) -> None:
        t0 = time.perf_counter()
        rt = self._rt
        if not msg.data:
            self._reject("dropped image: compressed image has no data")
            return
        # decoded on the worker, only if taken: a bad JPEG/PNG is reported there with one line
        decode = lambda: self._timed(lambda: decode_compressed(  # noqa: E731
            bytes(msg.data), msg.format, max_pixels=rt.max_image_pixels, max_aspect=rt.max_aspect_ratio))
        self._submit(msg.header, decode, t0)

    def _submit(self, header: Any, decode: Callable[[], Any], t0: float) -> None:
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        self.cam.submit(Frame(decode, stamp_ns, header.frame_id, header, self._now_ns()))
        self.times.add_overhead(time.perf_counter() - t0)

    def _timed(self, fn: Callable[[], Any]) -> Any:
        """Decoding runs on the worker for the frame it takes; counted as node overhead."""
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            self.times.add_overhead(time.perf_counter() - t0)

    def _reject(self, text: str) -> None:
        self.cam.reject(text)
        self._warn(f"[{self.cam.name}] {text}" if self.cam.name else text)

    # -- outputs (on the engine's worker thread) ---------------------------------------------------
    def publish(self, out: EngineOutput) -> None:
        t0 = time.perf_counter()
        frame = out.frame
        self.pubs["mask"].publish(mask_image(out.result, frame.header))
        if self._rt.publish_overlay:
            self.pubs["overlay"].publish(overlay_image(out))
        msg = result_message(out, self._pipeline)
        if "detections" in self.pubs:
            self.pubs["detections"].publish(detections_msg(frame.header, out.result.instances))
        publish_ms = (time.perf_counter() - t0) * 1e3
        now = self._now_ns()
        latency, from_stamp = frame_latency_ms(now, frame.stamp_ns, frame.arrived_ns or now)
        if not from_stamp and not self._off_clock_said:
            self._off_clock_said = True
            self._warn(off_clock_warning(self.cam.name, frame.arrived_ns, frame.stamp_ns))
        set_timings(msg, latency, out.timings_ms, publish_ms)
        self.pubs["result"].publish(msg)
        self.times.add_frame(latency, out.timings_ms, publish_ms)  # read by the diagnostics timer
