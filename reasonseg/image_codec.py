"""Raw camera buffers <-> numpy, honouring encoding, step and endianness.

ROS `cv_bridge` is not available everywhere we run, and a node must never
crash on a malformed frame: every check here raises `InputError` with one line.
"""
from __future__ import annotations

import io
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError

# encoding -> (channels in the buffer, dtype, how to reach RGB: a channel order, or an OpenCV conversion).
# Names and layouts as sensor_msgs/image_encodings.hpp defines them; conversions as cv_bridge makes them.
_ENCODINGS: dict[str, tuple[int, np.dtype, tuple[int, ...] | str | None]] = {
    "rgb8": (3, np.dtype(np.uint8), None),
    "bgr8": (3, np.dtype(np.uint8), (2, 1, 0)),
    "rgba8": (4, np.dtype(np.uint8), (0, 1, 2)),
    "bgra8": (4, np.dtype(np.uint8), (2, 1, 0)),
    "mono8": (1, np.dtype(np.uint8), None),
    "8UC1": (1, np.dtype(np.uint8), None),
    "8UC3": (3, np.dtype(np.uint8), (2, 1, 0)),  # OpenCV convention: BGR
    "8UC4": (4, np.dtype(np.uint8), (2, 1, 0)),  # BGRA
    "mono16": (1, np.dtype(np.uint16), None),
    "rgb16": (3, np.dtype(np.uint16), None),
    "bgr16": (3, np.dtype(np.uint16), (2, 1, 0)),
    "rgba16": (4, np.dtype(np.uint16), (0, 1, 2)),
    "bgra16": (4, np.dtype(np.uint16), (2, 1, 0)),
    # packed 4:2:2, two bytes a pixel: "yuv422" is UYVY, "yuv422_yuy2" is YUYV (uyvy / yuyv: their aliases)
    "yuv422": (2, np.dtype(np.uint8), "COLOR_YUV2RGB_UYVY"),
    "uyvy": (2, np.dtype(np.uint8), "COLOR_YUV2RGB_UYVY"),
    "yuv422_yuy2": (2, np.dtype(np.uint8), "COLOR_YUV2RGB_YUYV"),
    "yuyv": (2, np.dtype(np.uint8), "COLOR_YUV2RGB_YUYV"),
    # semi-planar 4:2:0 (V4L2, libcamera, GStreamer): a Y plane of `height` rows of `step` bytes, then
    # height / 2 rows of interleaved chroma at the same step (U, V for nv12; V, U for nv21), as rviz reads it
    "nv12": (1, np.dtype(np.uint8), "COLOR_YUV2RGB_NV12"),
    "nv21": (1, np.dtype(np.uint8), "COLOR_YUV2RGB_NV21"),
}
_SEMI_PLANAR = ("nv12", "nv21")
# raw sensor mosaics, demosaiced. OpenCV names a pattern by its second row (RGGB is its "BG"); these
# older names exist in every OpenCV 4 and 5.
_ENCODINGS |= {f"bayer_{pattern}{bits}": (1, np.dtype(np.uint8 if bits == 8 else np.uint16), f"COLOR_Bayer{cv}2RGB")
               for pattern, cv in (("rggb", "BG"), ("bggr", "RG"), ("gbrg", "GR"), ("grbg", "GB"))
               for bits in (8, 16)}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
DEFAULT_MAX_PIXELS = 4096 * 4096
DEFAULT_MAX_ASPECT = 10.0


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    *,
    is_bigendian: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float = DEFAULT_MAX_ASPECT,
) -> np.ndarray:
    """Return an HxWx3 uint8 RGB copy of a raw image buffer or raise InputError."""
    buf = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    check_image_layout(encoding, height, width, step, buf.size, max_pixels=max_pixels, max_aspect=max_aspect)
    channels, dtype, to_rgb = _ENCODINGS[encoding]
    if encoding in _SEMI_PLANAR:  # OpenCV takes the two planes stacked as one (height * 3 / 2)-row image
        planes = buf[: step * height * 3 // 2].reshape(height * 3 // 2, step)[:, :width].copy()
        import cv2

        return cv2.cvtColor(planes, getattr(cv2, to_rgb))
    row_bytes = width * channels * dtype.itemsize
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.copy().view(dtype.newbyteorder(">" if is_bigendian else "<") if dtype.itemsize > 1 else dtype)
    pixels = pixels.reshape(height, width, channels)
    if dtype.itemsize > 1:  # 16 bit -> 8 bit by the top byte, as cv_bridge scales: enough for detection
        pixels = (pixels.astype(np.uint16) >> 8).astype(np.uint8)
    if isinstance(to_rgb, str):  # demosaic / unpack 4:2:2
        import cv2

        return cv2.cvtColor(pixels[:, :, 0] if channels == 1 else pixels, getattr(cv2, to_rgb))
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if to_rgb is not None:
        pixels = pixels[:, :, list(to_rgb)]
    return np.ascontiguousarray(pixels[:, :, :3])


def check_image_size(width: int, height: int, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     max_aspect: float = DEFAULT_MAX_ASPECT) -> None:
    """Size checks that bound every later cost (decode, resize, overlay); raises InputError."""
    if height <= 0 or width <= 0:
        raise InputError(f"empty image {width}x{height}")
    if height * width > max_pixels:
        raise InputError(f"image {width}x{height} exceeds max_image_pixels={max_pixels}")
    if max(width, height) > max_aspect * min(width, height):
        raise InputError(f"image {width}x{height} is longer than max_aspect_ratio={max_aspect:g} times its "
                         f"short side: the models cannot use it")


def check_image_layout(encoding: str, height: int, width: int, step: int, nbytes: int, *,
                       max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = DEFAULT_MAX_ASPECT) -> None:
    """O(1) checks of a raw image's header against its buffer size; raises InputError."""
    if encoding not in _ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    check_image_size(width, height, max_pixels=max_pixels, max_aspect=max_aspect)
    channels, dtype, _ = _ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f"step {step} < width*channels*bytes ({row_bytes}) for {encoding} {width}x{height}")
    if encoding in _SEMI_PLANAR:
        if width % 2 or height % 2:
            raise InputError(f"{encoding} shares one chroma pair among 2x2 pixels: {width}x{height} must be even")
        if nbytes < step * height * 3 // 2:
            raise InputError(f"image data has {nbytes} bytes, expected step*height*3/2 = {step * height * 3 // 2} "
                             f"for {encoding}")
    if nbytes < step * height:
        raise InputError(f"image data has {nbytes} bytes, expected step*height = {step * height}")
    conversion = _ENCODINGS[encoding][2]
    if isinstance(conversion, str) and "YUV" in conversion and width % 2:
        raise InputError(f"{encoding} packs two pixels in four bytes: width {width} must be even")
    if isinstance(conversion, str) and "Bayer" in conversion and min(width, height) < 2:
        raise InputError(f"{encoding} is a 2x2 colour mosaic: {width}x{height} holds none")


def validate_rgb(image: np.ndarray) -> np.ndarray:
    """Check an in-memory image is HxWx3 uint8 (what every model here takes)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError("image must be an HxWx3 uint8 RGB array")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError("image has zero size")
    return image


def read_image_file(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    max_aspect: float = DEFAULT_MAX_ASPECT) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB, or raise InputError with one line.

    The size is read from the file header first, so an oversized file is refused before a
    multi-GB decode. libjpeg writes warnings such as "Premature end of JPEG file" straight to
    fd 2; they are silenced here so a bad file yields exactly our one error line.
    """
    import cv2

    p = Path(path)
    if not p.is_file():
        raise InputError(f"image not found: {p}")
    # read into memory only what could be an image of at most max_pixels (16-bit RGBA raw is 8 bytes a
    # pixel): a video or disk image named .jpg must not be loaded whole before the decoder refuses it
    if (nbytes := p.stat().st_size) > 8 * max_pixels + (1 << 20):
        raise InputError(f"{p} is {nbytes / 1e6:.0f} MB, more than an image of max_image_pixels={max_pixels} "
                         "can be")
    size = header_size(p)
    if size is not None:
        check_image_size(*size, max_pixels=max_pixels, max_aspect=max_aspect)
    data = np.fromfile(p, dtype=np.uint8)
    with _quiet_stderr():
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None or bgr.size == 0:
        raise InputError(f"cannot decode image: {p}")
    check_image_size(bgr.shape[1], bgr.shape[0], max_pixels=max_pixels, max_aspect=max_aspect)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def header_size(source: Path | io.BytesIO, what: str = "") -> tuple[int, int] | None:
    """(width, height) from a file's or buffer's header without decoding pixels; None if Pillow cannot tell."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # DecompressionBombWarning: the size check below is ours to make
            warnings.simplefilter("ignore")
            with Image.open(source) as img:  # lazy: reads the header only
                return img.size
    except Image.DecompressionBombError:  # over ~179 Mpx by the header: no setting allows decoding that here
        raise InputError(f"image {what or source} exceeds max_image_pixels (its header says over "
                         f"{2 * Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def decode_compressed(data: bytes, fmt: str = "", *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_aspect: float = DEFAULT_MAX_ASPECT) -> np.ndarray:
    """sensor_msgs/CompressedImage payload (JPEG or PNG, `format` as image_transport writes it, e.g.
    "bgr8; jpeg compressed bgr8") -> HxWx3 uint8 RGB, or InputError with one line. Size from the header first."""
    import cv2

    kind = fmt.lower()
    if kind and not any(k in kind for k in ("jpeg", "jpg", "png")):
        raise InputError(f"unsupported compressed image format {fmt[:60]!r} (JPEG or PNG)")
    size = header_size(io.BytesIO(data), "in message")
    if size is None:
        raise InputError(f"cannot decode compressed image ({len(data)} bytes, format {fmt[:60]!r})")
    check_image_size(*size, max_pixels=max_pixels, max_aspect=max_aspect)
    with _quiet_stderr():
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise InputError(f"cannot decode compressed image ({len(data)} bytes, format {fmt[:60]!r})")
    return np.ascontiguousarray(bgr[:, :, ::-1])


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
