"""reasonseg_sample_drive (a set-up step): refuses bad input in one line and never costs the bag already there."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rosbags", reason="rosbags (the ros-tools extra) not installed")
EXE = str(Path(sys.executable).parent / "reasonseg_sample_drive")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def test_unreadable_photos_leave_the_existing_bag_alone(tmp_path):
    bag = tmp_path / "drive"
    bag.mkdir()
    (bag / "drive.mcap").write_bytes(b"the bag a user already has")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "dog.jpg").write_bytes(b"not a jpeg")
    for folder in (photos, tmp_path / "missing"):
        proc = _run("--images", str(folder), "--out", str(bag), "--force")
        lines = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("reasonseg_sample_drive: error: ") and "dog.jpg" in lines[0], lines
        assert (bag / "drive.mcap").read_bytes() == b"the bag a user already has"


def test_an_output_path_the_system_refuses_is_one_line(tmp_path):
    proc = _run("--out", "/proc/reasonseg-drive")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("reasonseg_sample_drive: error: ")
    assert "Traceback" not in proc.stderr, proc.stderr


def test_a_stop_mid_write_keeps_the_old_bag_and_leaves_no_partial_one(tmp_path):
    import os
    import signal
    import time

    bag = tmp_path / "drive"
    bag.mkdir()
    (bag / "drive.mcap").write_bytes(b"the bag a user already has")
    log = tmp_path / "log"
    proc = subprocess.Popen([EXE, "--out", str(bag), "--force", "--fps", "40"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "frame/s" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # tqdm's rate: frames are being written
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text()
    assert (bag / "drive.mcap").read_bytes() == b"the bag a user already has"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drive", "log"]  # no .drive.partial


@pytest.mark.parametrize("fps", ["0", "-1", "nan", "inf", "1e-9", "5000", "ten"])
def test_a_bad_frame_rate_is_a_usage_error(tmp_path, fps):
    """0 was a ZeroDivisionError, NaN / inf a ValueError / OverflowError traceback; -1 and 1e-9 wrote a bag with
    negative or overflowing stamps."""
    proc = _run("--out", str(tmp_path / "drive"), "--fps", fps)
    assert proc.returncode == 2 and "argument --fps: " in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "drive").exists()
