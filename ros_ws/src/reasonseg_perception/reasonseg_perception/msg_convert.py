"""sensor_msgs/Image <-> numpy without cv_bridge (not available on every install); vision_msgs output."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from reasonseg.core.image_codec import decode_image
from reasonseg.core.results import Instance


def image_to_rgb(msg: Image, max_pixels: int, max_aspect: float) -> np.ndarray:
    return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        is_bigendian=bool(msg.is_bigendian), max_pixels=max_pixels, max_aspect=max_aspect)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """mono8 (HxW) or bgr8/rgb8 (HxWx3) uint8 array -> Image with the given header."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    msg = Image(header=header, height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = array.shape[1] * (1 if array.ndim == 2 else array.shape[2])
    msg.data = array.tobytes()
    return msg


@lru_cache(maxsize=1)
def vision_msgs_available() -> bool:
    """vision_msgs ships with real ROS installs, not as a PyPI wheel: publish detections only where it exists."""
    try:
        import vision_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def detections_msg(header: Header, instances: Sequence[Instance]):
    """vision_msgs/Detection2DArray: one Detection2D per chosen instance (box centre + size, label, score)."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray(header=header)
    for inst in instances:
        x0, y0, x1, y1 = inst.box
        det = Detection2D(header=header, id=inst.label)
        det.bbox.center.position.x, det.bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = inst.label, float(inst.score)
        det.results.append(hyp)
        out.detections.append(det)
    return out
