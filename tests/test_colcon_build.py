"""The three ROS packages build with colcon, as in a robot's workspace, into a temporary install space."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)


def test_colcon_builds_the_workspace(tmp_path):
    if shutil.which("colcon", path=str(VENV / "bin")) is None:
        pytest.skip("colcon not installed (pip install colcon-common-extensions)")
    proc = subprocess.run(["bash", str(ROOT / "scripts/colcon_build.sh"), str(VENV), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    install = tmp_path / "install"
    for rel in ("lib/reasonseg_perception/reasonseg_node", "lib/reasonseg_perception/reasonseg_launch",
                "share/reasonseg_bringup/launch/driving.launch.py", "share/reasonseg_bringup/config/driving.yaml",
                "share/reasonseg_bringup/config/fastdds_localhost_shm.xml",
                "share/reasonseg_perception/schema/reasonseg_node.schema.json",
                "share/reasonseg_interfaces/srv/SetInstruction.srv",
                "share/reasonseg_interfaces/msg/SegmentationResult.msg",
                "lib/libreasonseg_interfaces__rosidl_typesupport_c.so"):
        assert (install / rel).is_file(), f"{rel} missing from the colcon install space"
    site = next(install.glob("lib/python3*/site-packages"))
    assert (site / "reasonseg_interfaces" / "srv" / "__init__.py").is_file()
    assert "'console_scripts', 'reasonseg_node'" in (install / "lib/reasonseg_perception/reasonseg_node").read_text()


def test_package_xml_lists_what_the_code_imports():
    deps = {p.name: {e.text for e in ET.parse(p / "package.xml").getroot() if e.tag.endswith("depend")}
            for p in (ROOT / "ros_ws/src").iterdir() if (p / "package.xml").is_file()}
    node_src = "\n".join(f.read_text() for f in (ROOT / "ros_ws/src/reasonseg_perception/reasonseg_perception").glob("*.py"))
    imported = set(re.findall(r"^\s*from (\w+)\.(?:msg|srv) import", node_src, re.M)) - {"vision_msgs"}  # optional
    imported |= {"rclpy"} | ({"lifecycle_msgs"} if "rclpy.lifecycle" in node_src else set())
    assert {"sensor_msgs", "std_srvs", "reasonseg_interfaces", "lifecycle_msgs"} <= imported  # the scan works
    missing = imported - deps["reasonseg_perception"]
    assert not missing, f"reasonseg_perception/package.xml lacks {sorted(missing)}"
    assert {"python3-numpy", "python3-opencv", "python3-yaml"} <= deps["reasonseg_perception"]
    assert {"launch", "launch_ros", "ament_index_python", "reasonseg_perception"} <= deps["reasonseg_bringup"]
    assert {"rosidl_default_generators", "rosidl_default_runtime", "std_msgs"} <= deps["reasonseg_interfaces"]
