"""Raw camera buffers <-> numpy, honouring encoding, step and endianness.

ROS `cv_bridge` is not available everywhere we run, and a node must never
crash on a malformed frame: every check here raises `InputError` with one line.
"""
from __future__ import annotations

import functools
import io
import re
import struct
from pathlib import Path

import numpy as np

from reasonseg.core.errors import InputError

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

# what the CLI and the export tree read from a folder of photos
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})


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

    The size is read from the file's own header first (`header_size`), so an oversized file is refused
    before a multi-GB decode, and one whose header gives no size is refused unread."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"image not found: {p}")
    # read into memory only what could be an image of at most max_pixels (16-bit RGBA raw is 8 bytes a
    # pixel): a video or disk image named .jpg must not be loaded whole before the decoder refuses it
    if (nbytes := p.stat().st_size) > 8 * max_pixels + (1 << 20):
        raise InputError(f"{p} is {nbytes / 1e6:.0f} MB, more than an image of max_image_pixels={max_pixels} "
                         "can be")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read image {p}: {exc.strerror or exc}") from None
    return _decode(data, f"cannot decode image: {p}", max_pixels=max_pixels, max_aspect=max_aspect)


def decode_compressed(data: bytes, fmt: str = "", *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_aspect: float = DEFAULT_MAX_ASPECT) -> np.ndarray:
    """sensor_msgs/CompressedImage payload (JPEG or PNG, `format` as image_transport writes it, e.g.
    "bgr8; jpeg compressed bgr8") -> HxWx3 uint8 RGB, or InputError with one line. Size from the header first."""
    kind = fmt.lower()
    if kind and not any(k in kind for k in ("jpeg", "jpg", "png")):
        raise InputError(f"unsupported compressed image format {fmt[:60]!r} (JPEG or PNG)")
    return _decode(bytes(data), f"cannot decode compressed image ({len(data)} bytes, format {fmt[:60]!r})",
                   max_pixels=max_pixels, max_aspect=max_aspect)


def _decode(data: bytes, failure: str, *, max_pixels: int, max_aspect: float) -> np.ndarray:
    """Size from the header checked, then decoded by Pillow as the format the header was read as; `failure`
    starts the one-line error.

    Pillow, not OpenCV: libjpeg and libpng inside OpenCV print warnings ("Corrupt JPEG data", "libpng warning")
    straight to file descriptor 2, and silencing them meant pointing the whole process's fd 2 at /dev/null,
    losing other threads' log lines. Pillow's codecs print nothing, and their pixels are OpenCV's bit for bit
    (JPEG, PNG, BMP, TIFF, WebP, PNM; a CMYK JPEG within one level).
    EXIF orientation is NOT applied (OpenCV's IMREAD_COLOR applied it): a camera publishes frames as stored, so
    the node's masks must lie on the stored pixels, and the CLI gives the same result for the same bytes. Its
    mask.png, overlay.png and box are therefore in the stored frame: the size the file's header states.
    """
    fmt, width, height = header_size(data, failure)
    check_image_size(width, height, max_pixels=max_pixels, max_aspect=max_aspect)
    image_module = _pillow()
    try:
        img = image_module.open(io.BytesIO(data), formats=[fmt])  # that format only: read as the header was
    except (OSError, ValueError, SyntaxError, EOFError):  # corrupt beyond its size (bad CRC, huge text)
        raise InputError(failure) from None
    with img:
        if img.size != (width, height):
            raise InputError(f"{failure}: its header says {width}x{height}, its decoder {img.size[0]}x{img.size[1]}")
        try:
            img.load()
        except (OSError, ValueError, SyntaxError, EOFError):  # truncated, broken pixel data
            raise InputError(failure) from None
        return _to_rgb(img)


@functools.cache
def _pillow():
    """PIL.Image, its DecompressionBombWarning off: the size check before every decode is ours to make."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    return Image


def _to_rgb(img) -> np.ndarray:
    """A loaded Pillow image as HxWx3 uint8 RGB, converted as OpenCV's IMREAD_COLOR converts: 16-bit samples by
    their top byte, alpha dropped, palettes looked up, grey repeated."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # 16-bit grey (PNG, TIFF; PGM reads as "I")
        grey = (np.clip(np.asarray(img), 0, 0xFFFF).astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.ascontiguousarray(np.asarray(img if img.mode == "RGB" else img.convert("RGB")))


_HEADER_KINDS = "JPEG, PNG, BMP, WebP, TIFF, PBM/PGM/PPM or Sun raster"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (DHT, JPG, DAC are not)
_JPEG_MAX_SEGMENTS = 4096  # real files have a few dozen before the frame header
_JPEG_MARKER = re.compile(rb"\xff[^\xff]")  # the last 0xFF of a run and the marker byte after it
# P1..P6, then width and height between whitespace and comment lines ("#..." up to a line end)
_PNM = re.compile(rb"P[1-6](?:\s|#[^\n\r]*[\n\r])+(\d{1,9})(?:\s|#[^\n\r]*[\n\r])+(\d{1,9})\s")


def header_size(data: bytes, failure: str = "cannot decode image") -> tuple[str, int, int]:
    """(Pillow format name, width, height) read from the image's own header, without decoding pixels or
    validating anything else (an ancillary chunk's checksum, a text chunk's size: a full header read failing on
    those once let a 30000x30000 image be decoded blind). Each format is recognised by the leading bytes OpenCV
    and Pillow choose their decoder by. InputError (`failure`: why) when it is none of these or its header gives
    no size: such data is never decoded."""
    try:
        found = _read_header(data)
    except (struct.error, IndexError):  # the header is cut short
        found = None
    if found is None:
        raise InputError(f"{failure}: no size in its header (readable: {_HEADER_KINDS})")
    return found


def _read_header(b: bytes) -> tuple[str, int, int] | None:
    if b.startswith(b"\xff\xd8\xff"):
        size = _jpeg_size(b)
        return None if size is None else ("JPEG", *size)
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        length, kind, width, height = struct.unpack(">I4sII", b[8:24])
        return ("PNG", width, height) if kind == b"IHDR" and length == 13 else None
    if b.startswith(b"BM"):
        (dib,) = struct.unpack("<I", b[14:18])
        if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
            width, height = struct.unpack("<HH", b[18:22])
        elif dib >= 16:
            width, height = struct.unpack("<ii", b[18:26])
        else:
            return None
        return "BMP", width, abs(height)  # a negative height: rows stored top-down
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return _webp_size(b)
    if b[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return _tiff_size(b)
    if (numbers := _PNM.match(b[:4096])) is not None:
        return "PPM", int(numbers[1]), int(numbers[2])
    if b.startswith(b"\x59\xa6\x6a\x95"):
        return ("SUN", *struct.unpack(">II", b[4:12]))
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the marker segments to the first frame header (SOFn) as libjpeg does: bytes between segments that
    are not a marker are skipped, and so are fill bytes (0xFF runs). Linear in the data, at most
    _JPEG_MAX_SEGMENTS segments."""
    i = 2
    for _ in range(_JPEG_MAX_SEGMENTS):
        if (found := _JPEG_MARKER.search(data, i)) is None:
            return None
        marker, i = data[found.start() + 1], found.end()
        if marker in _JPEG_SOF:  # length, precision, height, width
            height, width = struct.unpack(">HH", data[i + 3: i + 7])
            return width, height
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:  # no length field
            continue
        (length,) = struct.unpack(">H", data[i: i + 2])
        if length < 2:
            return None
        i += length
    return None


def _webp_size(b: bytes) -> tuple[str, int, int] | None:
    kind = b[12:16]
    if kind == b"VP8 " and b[23:26] == b"\x9d\x01\x2a":  # lossy: 14-bit sizes after the start code
        width, height = struct.unpack("<HH", b[26:30])
        return "WEBP", width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L" and b[20] == 0x2F:  # lossless: 14 bits each, minus one
        (bits,) = struct.unpack("<I", b[21:25])
        return "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: the canvas, 24 bits each, minus one
        return ("WEBP", int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1)
    return None


def _tiff_size(b: bytes) -> tuple[str, int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first directory: the page a decoder reads."""
    order = "<" if b[:2] == b"II" else ">"
    big = b[2 if order == "<" else 3] == 0x2B  # BigTIFF: 64-bit offsets and counts, 20-byte entries
    (ifd,) = struct.unpack(order + ("Q" if big else "I"), b[8:16] if big else b[4:8])
    (count,) = struct.unpack(order + ("Q" if big else "H"), b[ifd: ifd + (8 if big else 2)])
    entry, first = (20, ifd + 8) if big else (12, ifd + 2)
    size: dict[int, int] = {}
    for k in range(min(count, 4096)):
        at = first + k * entry
        tag, kind = struct.unpack(order + "HH", b[at: at + 4])
        if tag in (256, 257):
            value = b[at + (12 if big else 8): at + entry]
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            size[tag] = struct.unpack(order + fmt, value[: struct.calcsize(fmt)])[0]
    return ("TIFF", size[256], size[257]) if len(size) == 2 else None
