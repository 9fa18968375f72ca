"""reasonseg_replay on bags a user may hand it: a good one replays; a damaged one, or one of a message type
not installed here, is one line and exit 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
from rosnode_harness import unique_domain_id  # noqa: E402

REPLAY = str(Path(sys.executable).parent / "reasonseg_replay")


def _bag(path: Path, msgtype: str = "std_msgs/msg/String") -> Path:
    """Three instructions; `msgtype` other than String: the same layout under a type this machine lacks."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    ts.register(get_types_from_msg("string data", msgtype))
    cls = ts.types[msgtype]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/perception/instruction", msgtype, typestore=ts)
        for i in range(3):
            writer.write(conn, (i + 1) * 10_000_000, ts.serialize_cdr(cls(data=f"the dog {i}"), msgtype))
    return path


def _replay(bag: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROS_DOMAIN_ID": str(unique_domain_id()), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run([REPLAY, str(bag), "--wait-subscribers", "0", "--rate", "10"], capture_output=True,
                          text=True, timeout=60, env=env)


def test_a_good_bag_replays(tmp_path):
    proc = _replay(_bag(tmp_path / "good"))
    assert proc.returncode == 0 and "replay done: 3 messages" in proc.stderr + proc.stdout, proc.stderr


@pytest.mark.parametrize("damage, needle", [
    ("metadata", "Could not load YAML"),
    ("truncated", "magic is invalid"),
    ("foreign type", "'acme_msgs/msg/Note' is not installed"),
])
def test_a_damaged_bag_is_one_line(tmp_path, damage, needle):
    bag = _bag(tmp_path / "bag", "acme_msgs/msg/Note" if damage == "foreign type" else "std_msgs/msg/String")
    if damage == "metadata":
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    elif damage == "truncated":
        (mcap,) = bag.glob("*.mcap")
        mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    proc = _replay(bag)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "[INFO]" not in line]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"reasonseg_replay: cannot replay {bag}") and needle in lines[0], lines


@pytest.mark.parametrize("args, needle", [
    (["--rate", "0"], "--rate: must be a finite number > 0, got '0'"),  # was a ZeroDivisionError after the wait
    (["--rate", "-1"], "--rate: must be a finite number > 0"),  # were replayed as fast as possible
    (["--rate", "nan"], "--rate: must be a finite number > 0"),
    (["--wait-subscribers", "-2"], "--wait-subscribers: must be a finite number >= 0"),
    (["--wait-subscribers", "1.5"], "--wait-subscribers: not an integer: '1.5'"),
    (["--wait-timeout", "inf"], "--wait-timeout: must be a finite number >= 0"),
])
def test_bad_numbers_are_usage_errors(tmp_path, args, needle):
    proc = subprocess.run([REPLAY, str(_bag(tmp_path / "good")), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("command", ["reasonseg_replay", "reasonseg_node"])
@pytest.mark.parametrize("domain_id", ["abc", "999"])
def test_a_bad_ros_domain_id_is_one_line(tmp_path, command, domain_id):
    """rcl refused 'abc' with a traceback (replay); with 999 Fast DDS ended the process, exit 1, with only its
    own "port number is too high" lines."""
    args = [str(_bag(tmp_path / "good")), "--wait-subscribers", "0"] if command == "reasonseg_replay" else []
    proc = subprocess.run([str(Path(REPLAY).parent / command), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ROS_DOMAIN_ID": domain_id})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"{command}: ROS_DOMAIN_ID='{domain_id}' must be an integer from 0 to 232"
