"""reasonseg_demo: replay the sample drive through reasonseg_node and write what it saw.

Starts the node exactly as `reasonseg bringup` / driving.launch.py do, replays the
bag in a second process, records mask / overlay / result here, and writes under
--out: masks/, overlays/, contact_sheet.png, latency.md and latency.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from reasonseg_interfaces.msg import SegmentationResult
from sensor_msgs.msg import Image

from reasonseg.cli.args import number
from reasonseg.core.errors import one_line
from reasonseg.core.image_codec import decode_image
from reasonseg.core.model_cache import resolve_cache_dir
from reasonseg.core.output_files import OutputError, prepare_output_dir, write_png
from reasonseg.core.render import contact_sheet
from reasonseg.core.report import markdown_table, median_table
from reasonseg.core.signals import ignore_further_signals, stop_requested
from reasonseg.segmenters.registry import BACKENDS
from reasonseg.settings.ros_args import MAX_DOMAIN_ID

from .launch_runner import LAUNCH_DEFAULTS, node_command, ros_environment, start_child, stop_child

NS = "/perception"


def _stamp(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


class Recorder(Node):
    def __init__(self) -> None:
        super().__init__("reasonseg_demo_recorder")
        self.lock = threading.Lock()
        self.frames: dict[int, np.ndarray] = {}
        self.masks: dict[int, np.ndarray] = {}
        self.overlays: dict[int, np.ndarray] = {}
        self.results: list[dict] = []
        self.create_subscription(Image, "/camera/image_raw", self._frame, qos_profile_sensor_data)
        self.create_subscription(Image, f"{NS}/mask", self._mask, 10)
        self.create_subscription(Image, f"{NS}/overlay", self._overlay, 10)
        self.create_subscription(SegmentationResult, f"{NS}/result", self._result, 10)

    def _img(self, msg: Image) -> np.ndarray:
        return decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data)

    def _frame(self, msg: Image) -> None:
        with self.lock:
            self.frames[_stamp(msg.header)] = self._img(msg)
            for old in sorted(self.frames)[:-300]:  # bounded: keep the last 30 s at 10 Hz
                del self.frames[old]

    def _mask(self, msg: Image) -> None:
        with self.lock:
            self.masks[_stamp(msg.header)] = self._img(msg)[:, :, 0] > 127

    def _overlay(self, msg: Image) -> None:
        with self.lock:
            self.overlays[_stamp(msg.header)] = self._img(msg)

    def _result(self, msg: SegmentationResult) -> None:
        with self.lock:
            self.results.append({
                "stamp_ns": _stamp(msg.header), "instruction": msg.instruction, "labels": list(msg.labels),
                "valid": msg.valid, "score": round(float(msg.score), 3), "box": [round(float(v), 1) for v in msg.box],
                "source": msg.grounding_source, "reasoning": msg.reasoning, "latency_ms": round(float(msg.latency_ms), 1),
                "stages_ms": {k: round(float(v), 1) for k, v in zip(msg.stage_names, msg.stage_ms)}})


def _wait(cond, timeout: float, node: Node) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        rclpy.spin_once(node, timeout_sec=0.1)
    return False


def write_outputs(rec: Recorder, out: Path) -> dict:
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    per_instruction: dict[str, list[dict]] = {}
    for i, r in enumerate(sorted(rec.results, key=lambda r: r["stamp_ns"])):
        s = r["stamp_ns"]
        if s in rec.masks:
            write_png(out / "masks" / f"{i:04d}.png", rec.masks[s].astype(np.uint8) * 255)
        if s in rec.overlays:
            write_png(out / "overlays" / f"{i:04d}.png", rec.overlays[s][:, :, ::-1])
        per_instruction.setdefault(r["instruction"], []).append(r)
    rows, sheet = [], []
    for text, rs in per_instruction.items():
        med = median_table(r["stages_ms"] for r in rs)
        lat = median_table({"latency_ms": r["latency_ms"]} for r in rs)["latency_ms"]
        last = next((r for r in reversed(rs) if r["valid"]), rs[-1])
        rows.append([text, len(rs), sum(r["valid"] for r in rs), ",".join(last["labels"]), last["source"], lat,
                     med.get("detector", "-"), med.get("sam_encoder", "-"), med.get("sam_decoder", "-"),
                     med.get("ros_publish", "-")])
        # The camera topic is best effort: the recorder may have missed a frame, so picture the newest
        # result (valid first) whose frame, mask and overlay all arrived.
        pictured = [r for r in sorted(rs, key=lambda r: (r["valid"], r["stamp_ns"]), reverse=True)
                    if all(r["stamp_ns"] in d for d in (rec.frames, rec.masks, rec.overlays))]
        if pictured:
            r, s = pictured[0], pictured[0]["stamp_ns"]
            sheet.append((rec.frames[s], rec.masks[s].astype(np.uint8) * 255, rec.overlays[s],
                          f"{text}  ->  {','.join(r['labels']) if r['valid'] else 'no target'}"))
    header = ["instruction", "masks", "valid", "label", "grounding", "median latency ms", "detector ms",
              "sam encoder ms", "sam decoder ms", "ros publish ms"]
    table = markdown_table(header, rows)
    (out / "latency.md").write_text(table)
    summary = {"results": sorted(rec.results, key=lambda r: r["stamp_ns"]), "table": [dict(zip(header, r)) for r in rows]}
    (out / "latency.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_png(out / "contact_sheet.png", contact_sheet(sheet)[:, :, ::-1])
    return {"table": table, "rows": len(rows), "sheet_rows": len(sheet)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reasonseg_demo")
    p.add_argument("--bag", type=Path, default=resolve_cache_dir() / "sample_drive")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.add_argument("--params-file", default=None)
    p.add_argument("--backend", default=LAUNCH_DEFAULTS["backend"], choices=BACKENDS)
    p.add_argument("--domain-id", type=number(int, high=MAX_DOMAIN_ID), default=os.environ.get("ROS_DOMAIN_ID") or "42",
                   help="ROS_DOMAIN_ID of the node and the replay (default: $ROS_DOMAIN_ID, else 42)")
    args = p.parse_args(argv)
    if not args.bag.exists():
        print(f"reasonseg_demo: sample drive not found at {args.bag}: run the set-up step", file=sys.stderr)
        return 2
    try:
        prepare_output_dir(args.out)  # before the node and the replay: a bad --out fails at once, not after them
    except OutputError as exc:
        print(f"reasonseg_demo: {exc}", file=sys.stderr)
        return 2
    env = ros_environment(local_shm=True)  # bag replay, node and recorder all on this machine
    env["ROS_DOMAIN_ID"] = str(args.domain_id)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                          "FASTDDS_DEFAULT_PROFILES_FILE")})
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # plain KeyboardInterrupt, see replay.py
    rec, node_proc, replay_proc, interrupted = None, None, None, False
    try:
        rec = Recorder()
        cmd = node_command(camera_topic="/camera/image_raw", params_file=args.params_file, backend=args.backend,
                           namespace=NS)
        print("[demo] starting node: " + " ".join(cmd), flush=True)
        node_proc = start_child(cmd, env)
        # The node subscribes once its models are loaded: wait on the graph, not a sleep.
        if not _wait(lambda: rec.count_publishers(f"{NS}/mask") > 0 or node_proc.poll() is not None, 180, rec) \
                or node_proc.poll() is not None:
            print("[demo] reasonseg_node did not come up (see its log above)", file=sys.stderr)
            return 1
        print("[demo] node up; replaying the sample drive", flush=True)
        replay_proc = start_child([str(Path(sys.executable).parent / "reasonseg_replay"), str(args.bag),
                                   "--wait-subscribers", "1", "--restamp"], env)
        while replay_proc.poll() is None:
            rclpy.spin_once(rec, timeout_sec=0.1)
        _wait(lambda: False, 6.0, rec)  # the last grounding + mask after the final frame
    except Exception as exc:  # a Ctrl-C that rclpy's message conversion turned into its own error is still the stop
        if not stop_requested():
            raise
        interrupted = True
        print(f"[demo] interrupted ({one_line(exc, 120)}): stopping the node and the replay", flush=True)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (reasonseg/core/signals.py): stop the children, keep what arrived
        interrupted = True
        print("[demo] interrupted: stopping the node and the replay", flush=True)
    finally:
        ignore_further_signals()  # stopping either way: a second Ctrl-C must not cut the children's stop short
        for proc in (replay_proc, node_proc):
            if proc is not None:
                stop_child(proc)
        if rec is not None:
            rec.destroy_node()
        rclpy.try_shutdown()
    if interrupted and (rec is None or not rec.results):
        return 130
    summary = write_outputs(rec, args.out)
    print(summary["table"])
    print(f"[demo] {len(rec.results)} masks; contact sheet with {summary['sheet_rows']} rows: "
          f"{args.out / 'contact_sheet.png'}" + (" (interrupted: what arrived before the stop)" if interrupted else ""))
    return 130 if interrupted else 0 if summary["sheet_rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
