"""sensor_msgs/Image <-> numpy without cv_bridge (not available on every install)."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from reasonseg.image_codec import decode_image


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
