import numpy as np
import pytest

from reasonseg.errors import InputError
from reasonseg.image_codec import decode_image, validate_rgb


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


@pytest.mark.parametrize("args, match", [
    (("rgb8", 4, 5, 14, bytes(60)), "step 14 <"),              # step smaller than a row
    (("rgb8", 4, 5, 15, bytes(59)), "expected step\\*height"),  # data shorter than step*height
    (("yuv422", 4, 5, 10, bytes(40)), "unsupported image encoding"),
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
    from reasonseg.image_codec import read_image_file

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
