"""reasonseg_demo (README command 1) refuses a bad --out or domain id at once, before it starts the node and the
replay.
(A whole run, Ctrl-C included, is in test_stops.py.)"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
DEMO = str(Path(sys.executable).parent / "reasonseg_demo")


@pytest.mark.parametrize("out, needle", [("/proc/reasonseg-demo", "cannot create output folder"),
                                         ("{file}", "exists and is not a folder")])
def test_bad_out_is_one_line_before_anything_starts(tmp_path, out, needle):
    (tmp_path / "a-file").write_text("not a folder")
    proc = subprocess.run([DEMO, "--out", out.format(file=tmp_path / "a-file")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("reasonseg_demo: ") and needle in proc.stderr
    assert "starting node" not in proc.stdout


@pytest.mark.parametrize("env_id, arg, needle", [
    ("abc", [], "argument --domain-id: not an integer: 'abc'"),  # a bad $ROS_DOMAIN_ID was a ValueError traceback
    ("0", ["--domain-id", "500"], "argument --domain-id: must be a finite number >= 0 and <= 232"),
])
def test_a_bad_domain_id_is_a_usage_error(tmp_path, env_id, arg, needle):
    proc = subprocess.run([DEMO, "--out", str(tmp_path / "demo"), *arg], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ROS_DOMAIN_ID": env_id})
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
