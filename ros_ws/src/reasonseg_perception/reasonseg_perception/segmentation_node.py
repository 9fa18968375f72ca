"""reasonseg_node: a managed (lifecycle) node; cameras + instructions in, mask / overlay / result out (DESIGN §6).

Lifecycle: configure = validate parameters and load the models once; activate = subscribe and publish;
deactivate = stop taking frames; cleanup = free the models. With `autostart` (default) the node does
configure + activate itself, so it behaves like a plain node unless a lifecycle manager drives it.
Several cameras share one loaded pipeline; each has its own topics under `<camera>/`.
"""
from __future__ import annotations

import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from reasonseg_interfaces.srv import SetInstruction
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from reasonseg.core.errors import InputError, ReasonSegError
from reasonseg.core.settings import Settings
from reasonseg.pipelines.registry import build_pipeline
from reasonseg.runtime.engine import Camera, EngineOutput, PerceptionEngine
from reasonseg.runtime.health import HealthRater
from reasonseg.runtime.memory import release_freed_memory

from .camera_io import CameraIO, camera_topic, output_types
from .log_routing import route_library_logs
from .node_diagnostics import INACTIVE, camera_values, diagnostic_status, stream_snapshot
from .node_parameters import checked_autostart, declare_settings, read_settings
from .node_qos import IMAGE_QOS, INSTRUCTION_QOS, OUTPUT_QOS, SERVICE_QOS, EffectiveQos


class ReasonSegNode(LifecycleNode):
    """Options come as arguments (name, namespace, parameter_overrides, context, cli_args), so several
    nodes can live in one process and in tests."""

    def __init__(self, node_name: str = "reasonseg", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        route_library_logs(rclpy.logging.get_logger(self.get_logger().name))
        self.settings: Settings | None = None
        self.startup_error: str | None = None  # why configure failed, one line
        self.engine: PerceptionEngine | None = None
        self._io: dict[str, CameraIO] = {}
        self._service_handles: list = []
        self._diag_pub = None
        self._diag_timer = None
        self._qos = EffectiveQos()
        self._shared_sub = None
        self._last_warn = ("", 0.0)
        self._active = False
        # last: a refused parameter raises here, and the context may still destroy this node at shutdown
        declare_settings(self)
        self.autostart = checked_autostart(self)

    # -- lifecycle ---------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            settings = read_settings(self)
            pipeline = build_pipeline(settings)
        except ReasonSegError as exc:  # ConfigError, ModelCacheError: one line, stay unconfigured
            self.startup_error = str(exc)
            if not self.autostart:  # with autostart, node_main prints it and exits 2
                self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.settings, self.startup_error = settings, None
        self.engine = PerceptionEngine(pipeline, settings.runtime, on_error=self._warn)
        for name in settings.cameras:
            io = CameraIO(self.engine.add_camera(name, self._publish), HealthRater(settings.diagnostics),
                          settings.runtime, pipeline.name, lambda: self.get_clock().now().nanoseconds, self._warn)
            io.pubs = {leaf: self._publisher(msg_type, camera_topic(name, leaf))
                       for leaf, msg_type in output_types().items()}
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
            image_topic = self.resolve_topic_name(camera_topic(name, "image"))  # honours remaps (image:=/camera/...)
            if settings.image_transport == "compressed":
                image_topic += "/compressed"  # image_transport's naming
                io.subs.append(self._subscription(CompressedImage, image_topic, io.on_compressed, IMAGE_QOS))
            else:
                io.subs.append(self._subscription(Image, image_topic, io.on_image, IMAGE_QOS))
            if not settings.shared_instruction:
                # raw=True: we deserialize ourselves, so a malformed (e.g. non-UTF-8) sample is dropped, not fatal.
                io.subs.append(self._subscription(String, camera_topic(name, "instruction"),
                                                  lambda raw, cams=(io.cam,): self._on_instruction(cams, raw),
                                                  INSTRUCTION_QOS, raw=True))
            io.active_since = time.monotonic()
        if settings.shared_instruction:
            cams = tuple(io.cam for io in self._io.values())
            self._shared_sub = self._subscription(String, shared, lambda raw: self._on_instruction(cams, raw),
                                                  INSTRUCTION_QOS, raw=True)
        self._active = True
        first = next(iter(self._io))
        self.get_logger().info(f"active: image={self.resolve_topic_name(camera_topic(first, 'image'))} "
                               f"instruction={self.resolve_topic_name(shared if settings.shared_instruction else camera_topic(first, 'instruction'))}")
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
        return self._qos.create("publisher", self.resolve_topic_name(topic), OUTPUT_QOS, lambda qos, opts:
                                self.create_lifecycle_publisher(msg_type, topic, qos, qos_overriding_options=opts))

    def _subscription(self, msg_type: Any, topic: str, callback, qos: QoSProfile, raw: bool = False):
        return self._qos.create("subscription", self.resolve_topic_name(topic), qos, lambda q, opts:
                                self.create_subscription(msg_type, topic, callback, q, qos_overriding_options=opts,
                                                         raw=raw))

    # -- instructions -----------------------------------------------------------------------------
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
            self._io[out.camera].publish(out)
        except Exception:
            if self.context.ok():
                raise  # a real failure: the engine reports and counts it
            # else the context went away mid-publish: a clean stop, not an error

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        now = time.monotonic()
        for name, io in self._io.items():
            retry, times = io.cam.grounding_backoff.state(), io.times.snapshot()
            values = camera_values(io.cam, retry, times)
            level, message = (io.health.rate(stream_snapshot(io.cam, retry, now, io.active_since), times.latencies_ms)
                              if self._active else INACTIVE)
            values.update(io.health.rates if self._active else {})
            arr.status.append(diagnostic_status(level, message, values, node_name=self.get_name(),
                                                namespace=self.get_namespace(), camera=name))
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
