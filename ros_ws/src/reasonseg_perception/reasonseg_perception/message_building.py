"""The node's outputs for one processed frame (an EngineOutput): mask and overlay images, and the
SegmentationResult with its latency and per-stage times."""
from __future__ import annotations

import numpy as np
from reasonseg_interfaces.msg import SegmentationResult
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from reasonseg.core.render import render_overlay
from reasonseg.core.results import FrameResult
from reasonseg.runtime.engine import EngineOutput

from .msg_convert import array_to_image

PUBLISH_STAGE = "ros_publish"  # the node's own stage, after the pipeline's


def mask_image(result: FrameResult, header: Header) -> Image:
    return array_to_image(result.mask.astype(np.uint8) * 255, "mono8", header)


def overlay_image(out: EngineOutput) -> Image:
    """The frame with the mask, its box and the instruction drawn on it."""
    overlay = render_overlay(out.image, out.result, out.instruction)
    return array_to_image(overlay[:, :, ::-1], "bgr8", out.frame.header)


def result_message(out: EngineOutput, pipeline: str) -> SegmentationResult:
    """All but the timing fields (`set_timings`, once publishing is done). `pipeline`: the engine's, named when the
    result has no grounding."""
    result = out.result
    msg = SegmentationResult(header=out.frame.header, camera=out.camera, instruction=out.instruction,
                             labels=list(result.labels), score=float(result.score), valid=bool(result.valid),
                             mask_source=result.mask_source,
                             pipeline=result.grounding.pipeline if result.grounding else pipeline)
    msg.box = [float(v) for v in (result.box or (0.0, 0.0, 0.0, 0.0))]
    msg.instance_labels = [i.label for i in result.instances]
    msg.instance_scores = [float(i.score) for i in result.instances]
    msg.instance_boxes = [float(v) for i in result.instances for v in i.box]
    g = result.grounding
    if g is not None:
        msg.grounding_source = g.source
        msg.reasoning = f"{g.reasoning}; {result.note}" if result.note else g.reasoning
    msg.grounding_age_s = float(out.grounding_age_s)
    return msg


def set_timings(msg: SegmentationResult, latency_ms: float, timings_ms: dict[str, float], publish_ms: float) -> None:
    msg.latency_ms = float(latency_ms)
    msg.stage_names = list(timings_ms) + [PUBLISH_STAGE]
    msg.stage_ms = [float(v) for v in timings_ms.values()] + [publish_ms]


def off_clock_warning(camera: str, arrived_ns: int, stamp_ns: int) -> str:
    """Said once per camera when frame stamps are not on the node's clock (latency then counts from arrival)."""
    skew = (arrived_ns - stamp_ns) / 1e9
    return (f"{f'[{camera}] ' if camera else ''}frame stamps are {abs(skew):.0f} s "
            f"{'behind' if skew > 0 else 'ahead of'} this node's clock (unstamped frames, a sensor's "
            "own clock, or a bag replayed without use_sim_time): latency is measured from arrival")
