"""A sample drive as rosbag2 (MCAP): real photos as a slowly panning 640x480 camera + instructions.

The script is the bag's source of truth: each scene holds one photo and a list of
instructions sent while the camera looks at it.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from reasonseg.cli.args import number
from reasonseg.core.errors import InputError, ReasonSegError
from reasonseg.core.image_codec import read_image_file

CAMERA_TOPIC = "/camera/image_raw"
INSTRUCTION_TOPIC = "/perception/instruction"  # the node in the launch default namespace
FRAME_SIZE = (640, 480)
SECONDS_PER_INSTRUCTION = 4.0


@dataclass(frozen=True)
class Scene:
    photo: str
    instructions: tuple[str, ...]


SCENES = (
    Scene("dog.jpg", ("the white truck parked on the street", "the dog", "the bicycle next to the dog")),
    Scene("person.jpg", ("the horse", "segment the person standing next to the horse")),
    Scene("horses.jpg", ("the leftmost horse",)),
    Scene("giraffe.jpg", ("the zebra",)),
)


def _pan(photo: np.ndarray, t: float) -> np.ndarray:
    """A 92 % crop sliding across the photo: objects move a little every frame, as from a car."""
    h, w = photo.shape[:2]
    cw, ch = int(w * 0.92), int(h * 0.92)
    x = int((w - cw) * (0.5 + 0.5 * np.sin(t * 0.6)))
    y = int((h - ch) * 0.5)
    return cv2.resize(photo[y:y + ch, x:x + cw], FRAME_SIZE, interpolation=cv2.INTER_AREA)


def write_sample_drive(images: Path, out: Path, *, fps: float = 10.0, force: bool = False) -> Path:
    """Write the bag unless one made by this same script and fps is already there."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    stamp = out.with_name(out.name + ".stamp")
    want = f"{hashlib.sha256(Path(__file__).read_bytes()).hexdigest()} fps={fps}"
    if not force and out.is_dir() and stamp.is_file() and stamp.read_text() == want:
        return out

    photos = {}  # all read before anything is written: a wrong --images must not cost the bag already there
    for scene in SCENES:
        try:
            photos[scene.photo] = read_image_file(images / scene.photo)[:, :, ::-1].copy()  # RGB -> BGR
        except InputError as exc:
            raise InputError(f"{exc}: run the set-up step") from None
    ts = get_typestore(Stores.ROS2_KILTED)
    Image, String = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/String"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    staging = out.with_name(f".{out.name}.partial")  # the old bag is replaced only by a complete one
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    partial = staging / out.name  # rosbags names the storage file after the bag folder
    t0_ns = 1_700_000_000 * 1_000_000_000
    step_ns = int(1e9 / fps)
    n_per = int(SECONDS_PER_INSTRUCTION * fps)
    total = sum(len(s.instructions) for s in SCENES) * n_per
    try:
        with Writer(partial, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            cam = writer.add_connection(CAMERA_TOPIC, Image.__msgtype__, typestore=ts)
            ins = writer.add_connection(INSTRUCTION_TOPIC, String.__msgtype__, typestore=ts)
            k = 0
            with tqdm(total=total, desc="sample drive", unit="frame") as bar:
                for scene in SCENES:
                    bgr = photos[scene.photo]
                    for text in scene.instructions:
                        t_ns = t0_ns + k * step_ns
                        writer.write(ins, t_ns - step_ns // 2,
                                     ts.serialize_cdr(String(data=text), String.__msgtype__))
                        for _ in range(n_per):
                            t_ns = t0_ns + k * step_ns
                            frame = _pan(bgr, k / fps)
                            header = Header(stamp=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000),
                                            frame_id="camera")
                            msg = Image(header=header, height=FRAME_SIZE[1], width=FRAME_SIZE[0], encoding="bgr8",
                                        is_bigendian=0, step=FRAME_SIZE[0] * 3, data=frame.reshape(-1))
                            writer.write(cam, t_ns, ts.serialize_cdr(msg, Image.__msgtype__))
                            k += 1
                            bar.update()
    except BaseException:  # a stop or a full disk mid-write: no half-written bag left next to the old one
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    staging.rmdir()
    stamp.write_text(want)
    return out


def main(argv: list[str] | None = None) -> int:
    """reasonseg_sample_drive: write the sample drive bag (a set-up step)."""
    import argparse

    from reasonseg.core.model_cache import resolve_cache_dir

    p = argparse.ArgumentParser(prog="reasonseg_sample_drive", description="write the sample drive rosbag2 (MCAP)")
    p.add_argument("--images", type=Path, help="photo folder (default: <cache>/images)")
    p.add_argument("--out", type=Path, help="bag folder (default: <cache>/sample_drive)")
    p.add_argument("--fps", type=number(low=1, high=1000), default=10.0)  # >= 1 frame per instruction
    p.add_argument("--force", action="store_true", help="rewrite even if up to date")
    args = p.parse_args(argv)
    cache = resolve_cache_dir()
    try:
        out = write_sample_drive(args.images or cache / "images", args.out or cache / "sample_drive", fps=args.fps,
                                 force=args.force)
    except (ReasonSegError, OSError) as exc:  # missing photos, an output path the system refuses: one line
        print(f"reasonseg_sample_drive: error: {exc}", file=sys.stderr)
        return 2
    print(f"[setup] sample drive: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
