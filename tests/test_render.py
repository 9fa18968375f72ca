"""Overlays: correct tint and bounded cost on any frame shape the node can be sent."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from reasonseg.core.results import FrameResult
from reasonseg.core.render import render_overlay


def _result(mask: np.ndarray, box=(1.0, 1.0, 5.0, 5.0)) -> FrameResult:
    return FrameResult(mask, True, ("dog",), (box,), 0.9, None, {})


def test_overlay_tints_only_the_mask():
    img = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:50] = True
    out = render_overlay(img, _result(mask, (30, 20, 50, 40)), "the dog")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert not np.array_equal(out[30, 40], img[30, 40])  # inside: tinted
    assert np.array_equal(out[55, 70], img[55, 70])      # far outside mask, box and caption: untouched


def test_extreme_frames_render_in_a_child_process():
    """A 1 x 10,000,000 frame once drew a caption scaled by its width, and a lone surrogate in a caption once
    reached cv2.putText: both crashed OpenCV (SIGSEGV). Run them in a child so a crash fails this test
    instead of killing pytest."""
    code = textwrap.dedent("""
        import numpy as np
        from reasonseg.core.results import FrameResult
        from reasonseg.core.render import contact_sheet, render_overlay
        for h, w in ((1, 10_000_000), (10_000_000, 1), (2, 3_000_000)):
            img = np.zeros((h, w, 3), np.uint8)
            mask = np.zeros((h, w), bool)
            mask[:, : w // 2] = True
            res = FrameResult(mask, True, ("car",), ((0.0, 0.0, w / 2, float(h)),), 0.5, None, {})
            out = render_overlay(img, res, "x" * 10_000)
            assert out.shape == img.shape
        img = np.zeros((40, 60, 3), np.uint8)  # text OpenCV cannot encode (lone surrogates) or draw (non-ASCII)
        res = FrameResult(np.ones((40, 60), bool), True, ("d\\udcffg",), ((0.0, 0.0, 60.0, 40.0),), 0.5, None, {})
        out = render_overlay(img, res, "the \\udcff\\udcfe d\\u00f6g \\U0001f415")
        contact_sheet([(img, res.mask, out, "the \\udcff d\\u00f6g")])
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
