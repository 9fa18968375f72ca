import numpy as np
import pytest

from reasonseg.core.errors import InputError
from reasonseg.core.image_codec import decode_image, validate_rgb


def _rgb(h=4, w=5):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


def test_rgb8_and_bgr8_roundtrip_with_padded_step():
    img = _rgb()
    padded = np.zeros((4, 5 * 3 + 7), np.uint8)  # rows padded to a larger step, as drivers do
    padded[:, :15] = img.reshape(4, 15)
    out = decode_image("rgb8", 4, 5, 22, padded.tobytes())
    assert np.array_equal(out, img)
    bgr = img[:, :, ::-1].copy()
    assert np.array_equal(decode_image("bgr8", 4, 5, 15, bgr.tobytes()), img)


def test_mono_and_rgba():
    mono = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = decode_image("mono8", 4, 5, 5, mono.tobytes())
    assert out.shape == (4, 5, 3) and np.array_equal(out[:, :, 1], mono)
    rgba = np.concatenate([_rgb(), np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(decode_image("rgba8", 4, 5, 20, rgba.tobytes()), _rgb())
    m16 = (np.arange(20).reshape(4, 5) * 1000).astype(">u2")
    out16 = decode_image("mono16", 4, 5, 10, m16.tobytes(), is_bigendian=True)
    assert np.array_equal(out16[:, :, 0], (m16.astype(np.uint16) >> 8).astype(np.uint8))


def _smooth(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, 255 - (x + y) * 255 // (w + h)], -1).astype(np.uint8)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits, bigendian", [(8, False), (16, False), (16, True)])
def test_bayer_mosaics_are_demosaiced_in_their_own_pattern(pattern, bits, bigendian):
    """Raw sensor frames (GigE / industrial cameras): a mosaic built by hand from a smooth image comes back
    as that image; read in any other pattern, red and blue trade places (mean error ~65)."""
    img = _smooth()
    mosaic = np.zeros(img.shape[:2], np.uint16)
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        mosaic[dy::2, dx::2] = img[dy::2, dx::2, "rgb".index(colour)]
    if bits == 16:
        raw = (mosaic * 257).astype(">u2" if bigendian else "<u2")  # full 16-bit range
    else:
        raw = mosaic.astype(np.uint8)
    h, w = mosaic.shape
    step = w * bits // 8
    out = decode_image(f"bayer_{pattern}{bits}", h, w, step, raw.tobytes(), is_bigendian=bigendian)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out[2:-2, 2:-2].astype(int) - img[2:-2, 2:-2]).mean() < 2  # demosaicing, borders aside
    for other in {"rggb", "bggr", "gbrg", "grbg"} - {pattern}:
        wrong = decode_image(f"bayer_{other}{bits}", h, w, step, raw.tobytes(), is_bigendian=bigendian)
        assert np.abs(wrong[2:-2, 2:-2].astype(int) - img[2:-2, 2:-2]).mean() > 30


def _bt601(rgb):
    """Limited-range BT.601 Y, U, V of one colour: the form UVC cameras send, written out by hand."""
    r, g, b = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return [round(y), round(u), round(v)]


@pytest.mark.parametrize("encoding, order", [("yuv422", "UYVY"), ("uyvy", "UYVY"),
                                             ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_packed_yuv422_is_unpacked_in_its_byte_order(encoding, order):
    """USB (UVC) cameras: 4:2:2, two pixels in four bytes. Each colour pair comes back within rounding, and a
    padded step is honoured."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (250, 200, 30), (20, 40, 60)]
    row = []
    for rgb in colours:  # one pixel pair per colour
        y, u, v = _bt601(rgb)
        row += [u, y, v, y] if order == "UYVY" else [y, u, y, v]
    w = 2 * len(colours)
    data = np.array([row + [0] * 6, row + [0] * 6], np.uint8)  # 2 rows, step padded by 6 bytes
    out = decode_image(encoding, 2, w, 2 * w + 6, data.tobytes())
    want = np.repeat(np.array(colours, np.int32), 2, axis=0)
    assert out.shape == (2, w, 3)
    assert np.abs(out.astype(np.int32) - want[None]).max() <= 3, out[0]


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_semi_planar_420_is_read_with_its_chroma_order_and_step(encoding):
    """V4L2 / libcamera / GStreamer cameras: a Y plane, then one interleaved chroma pair per 2x2 block. Each
    2x2 block of one colour comes back within rounding, through a padded step; the other chroma order swaps
    red and blue."""
    colours = [(255, 0, 0), (0, 0, 255), (250, 200, 30), (20, 40, 60)]
    h, w, step = 2, 2 * len(colours), 2 * len(colours) + 4
    y_plane, chroma = np.zeros((h, step), np.uint8), np.zeros((h // 2, step), np.uint8)
    for i, rgb in enumerate(colours):
        y, u, v = _bt601(rgb)
        y_plane[:, 2 * i: 2 * i + 2] = y
        chroma[0, 2 * i: 2 * i + 2] = (u, v) if encoding == "nv12" else (v, u)
    data = np.concatenate([y_plane, chroma]).tobytes()
    want = np.repeat(np.array(colours, np.int32), 2, axis=0)[None]
    out = decode_image(encoding, h, w, step, data)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.int32) - want).max() <= 3, out[0]
    other = decode_image("nv21" if encoding == "nv12" else "nv12", h, w, step, data)
    assert np.abs(other.astype(np.int32) - want).max() > 100  # pure red reads as blue


def test_sixteen_bit_colour_and_8uc4():
    img = _rgb()
    wide = (img.astype(np.uint16) << 8) | 0x5A  # the low byte must not leak into the 8-bit result
    assert np.array_equal(decode_image("rgb16", 4, 5, 30, wide.astype("<u2").tobytes()), img)
    assert np.array_equal(decode_image("bgr16", 4, 5, 30, wide[:, :, ::-1].astype(">u2").tobytes(),
                                       is_bigendian=True), img)
    alpha = np.full((4, 5, 1), 0xFFFF, np.uint16)
    assert np.array_equal(decode_image("rgba16", 4, 5, 40, np.concatenate([wide, alpha], 2).astype("<u2").tobytes()),
                          img)
    assert np.array_equal(decode_image("bgra16", 4, 5, 40, np.concatenate([wide[:, :, ::-1], alpha], 2)
                                       .astype("<u2").tobytes()), img)
    bgra = np.concatenate([img[:, :, ::-1], np.full((4, 5, 1), 255, np.uint8)], 2)
    assert np.array_equal(decode_image("8UC4", 4, 5, 20, bgra.tobytes()), img)


@pytest.mark.parametrize("args, match", [
    (("rgb8", 4, 5, 14, bytes(60)), "step 14 <"),              # step smaller than a row
    (("rgb8", 4, 5, 15, bytes(59)), "expected step\\*height"),  # data shorter than step*height
    (("nv24", 4, 6, 6, bytes(72)), "unsupported image encoding"),
    (("nv12", 4, 6, 6, bytes(35)), "expected step\\*height\\*3/2 = 36 for nv12"),  # the chroma plane is missing
    (("nv21", 3, 6, 6, bytes(36)), "2x2 pixels: 6x3 must be even"),
    (("32FC1", 4, 5, 20, bytes(80)), "unsupported image encoding"),
    (("yuv422", 4, 5, 10, bytes(40)), "width 5 must be even"),         # 4:2:2 packs pixel pairs
    (("yuv422_yuy2", 4, 4, 7, bytes(28)), "step 7 <"),
    (("bayer_rggb8", 1, 8, 8, bytes(8)), "2x2 colour mosaic"),
    (("bayer_gbrg16", 4, 5, 9, bytes(36)), "step 9 <"),                # 16 bit: two bytes a pixel
    (("rgb8", 0, 5, 15, b""), "empty image"),
    (("rgb8", 5000, 5000, 15000, b""), "exceeds max_image_pixels"),
    (("mono8", 1, 100_000, 100_000, bytes(100_000)), "max_aspect_ratio"),  # legal size, unusable shape
    (("bgr8", 3000, 20, 60, bytes(60 * 3000)), "max_aspect_ratio"),
])
def test_malformed_images_raise_one_line(args, match):
    with pytest.raises(InputError, match=match) as info:
        decode_image(*args)
    assert "\n" not in str(info.value)


def test_validate_rgb():
    validate_rgb(_rgb())
    for bad in (np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.float32), np.zeros((0, 5, 3), np.uint8)):
        with pytest.raises(InputError):
            validate_rgb(bad)


def test_a_file_too_big_for_any_allowed_image_is_refused_unread(tmp_path):
    """A video or disk image named .jpg: refused from its size, before it is read into memory (np.fromfile read
    it whole, then the decoder refused it)."""
    from reasonseg.core.image_codec import read_image_file

    big = tmp_path / "drive.jpg"
    with big.open("wb") as f:  # sparse: 1 GB on paper, nothing on disk
        f.truncate(1 << 30)
    with pytest.raises(InputError, match="1074 MB, more than an image of max_image_pixels") as info:
        read_image_file(big)
    assert "\n" not in str(info.value)
    with big.open("r+b") as f:
        f.truncate(2 << 20)
    with pytest.raises(InputError, match="2 MB, more than an image of max_image_pixels=1000"):
        read_image_file(big, max_pixels=1000)  # the cap follows the setting
