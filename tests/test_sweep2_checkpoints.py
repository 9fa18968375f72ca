"""A model directory whose config.json asks for absurd sizes is refused in one line before anything is allocated
(issue 29, item 8): `num_hidden_layers: 1000000` in a LENS config grew to 10 GB before the OOM killer, and an
L2L one spent minutes building a million BERT layers. The config is checked against what the weights ship (the
safetensors headers); each load runs in a child process with a 6 GB address-space limit and a deadline, so a
regression fails the test instead of the machine."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (kind, config file, dotted field, value, what the one line must name)
CASES = [
    ("lens", "config.json", "num_hidden_layers", 1_000_000, "num_hidden_layers=1e+06"),
    ("lens", "config.json", "vision_config.depth", 10 ** 9, "vision_config.depth=1e+09"),
    ("lens", "config.json", "hidden_size", 10 ** 9, "1000000000"),
    ("lens", "config.json", "num_hidden_layers", 40, "missing key(s): mllm.model.language_model.layers.2."),
    ("lens", "sam2_config.json", "vision_config.backbone_config.blocks_per_stage", [1, 2, 10 ** 6, 1],
     "blocks_per_stage=1e+06"),
    ("cora", "config.json", "text_config.num_hidden_layers", 1_000_000, "num_hidden_layers=1e+06"),
    ("cora", "config.json", "text_config.intermediate_size", 10 ** 9, "1000000000"),
    ("l2l", "config.json", "text.num_hidden_layers", 1_000_000, "text.num_hidden_layers=1e+06"),
    ("l2l", "config.json", "vision.depths", [1, 1, 10 ** 7, 1], "vision.depths=1e+07"),
    ("l2l", "config.json", "text.hidden_size", 10 ** 9, "1000000000"),
]

CHILD = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from reasonseg.core.errors import CheckpointError
from reasonseg.models.cora import CoraModel
from reasonseg.models.l2l import L2LSegmentor
from reasonseg.models.lens import LensModel
load = {"lens": LensModel.from_pretrained, "cora": CoraModel.from_pretrained, "l2l": L2LSegmentor.from_pretrained}
for line in sys.stdin:
    kind, path = json.loads(line)
    t0 = time.monotonic()
    try:
        load[kind](path)
        result = "loaded"
    except CheckpointError as exc:
        result = "CheckpointError: " + str(exc)
    except BaseException as exc:
        result = type(exc).__name__ + ": " + str(exc)
    print(json.dumps([result, time.monotonic() - t0]), flush=True)
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    from tiny_models import tiny_l2l, tiny_lens_release
    from training.init_model import main as init_model

    root = tmp_path_factory.mktemp("absurd")
    lens, sam2 = tiny_lens_release(root / "lens", num_queries=4)
    qwen = root / "lens-parts" / "qwen"
    assert init_model(["cora", "--qwen", str(qwen), "--sam2", str(sam2), "--dtype", "float32", "--out",
                       str(root / "cora")]) == 0
    return {"lens": lens, "cora": root / "cora", "l2l": tiny_l2l(root / "l2l")}


def _edited(src: Path, dst: Path, config: str, field: str, value) -> Path:
    """A copy of the checkpoint dir (weights linked, not copied) with one config field changed."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name != config:
            os.symlink(f, dst / f.name)
    raw = json.loads((src / config).read_text())
    *parents, last = field.split(".")
    node = raw
    for key in parents:
        node = node[key]
    assert last in node, f"{field} not in {config}"
    node[last] = value
    (dst / config).write_text(json.dumps(raw))
    return dst


def test_absurd_sizes_in_a_config_are_refused_in_one_line_before_allocating(checkpoints, tmp_path) -> None:
    jobs = [(kind, str(_edited(checkpoints[kind], tmp_path / f"{i}-{kind}", config, field, value)))
            for i, (kind, config, field, value, _) in enumerate(CASES)]
    jobs.append(("lens", str(checkpoints["lens"])))  # the untouched ones still load
    jobs.append(("l2l", str(checkpoints["l2l"])))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", CHILD], input="".join(json.dumps(j) + "\n" for j in jobs), env=env,
                       capture_output=True, text=True, timeout=600)
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == len(jobs), f"the child died after {len(results)} of {len(jobs)} loads " \
                                      f"({time.monotonic() - t0:.0f} s): {r.stderr[-2000:]}"
    for (kind, _, field, value, named), (result, seconds) in zip(CASES, results):
        assert result.startswith("CheckpointError: "), (kind, field, result[:300])
        assert "\n" not in result and named in result, (kind, field, result)
        assert seconds < 30, (kind, field, seconds)
    assert [r for r, _ in results[len(CASES):]] == ["loaded", "loaded"]


def test_the_count_check_names_the_field_and_the_tensors(checkpoints, tmp_path) -> None:
    from reasonseg.core.errors import CheckpointError
    from reasonseg.models.l2l import L2LSegmentor

    bad = _edited(checkpoints["l2l"], tmp_path / "bad", "config.json", "text.num_hidden_layers", 10 ** 12)
    with pytest.raises(CheckpointError, match=r"says text\.num_hidden_layers=1e\+12, but its weights hold \d+ "
                                              r"tensors in all.*Fix: use the config\.json saved with these weights"):
        L2LSegmentor.from_pretrained(bad)


def test_a_truncated_weight_file_is_one_line_naming_it(checkpoints, tmp_path) -> None:
    from reasonseg.core.errors import CheckpointError
    from reasonseg.models.l2l import L2LSegmentor

    bad = tmp_path / "l2l"
    bad.mkdir()
    for f in checkpoints["l2l"].iterdir():
        data = f.read_bytes()
        (bad / f.name).write_bytes(data[: len(data) // 2] if f.name == "model.safetensors" else data)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file .*truncated"):
        L2LSegmentor.from_pretrained(bad)


def test_transformers_loaders_can_check_a_dir_before_building(checkpoints, tmp_path) -> None:
    """The shared check for loaders that build through transformers' from_pretrained (in-process MLLM, SAM2)."""
    from reasonseg.core.errors import CheckpointError
    from reasonseg.models.weights import check_model_dir

    qwen, sam2 = checkpoints["lens"].parent / "lens-parts" / "qwen", checkpoints["lens"].parent / "lens-parts" / "sam2"
    check_model_dir(qwen, "mllm.model")  # as written: fine
    check_model_dir(sam2, "segmenter.model")
    check_model_dir(tmp_path / "absent", "mllm.model")  # left to the loader's own message
    bad = _edited(qwen, tmp_path / "qwen", "config.json", "text_config.num_hidden_layers", 10 ** 6)
    with pytest.raises(CheckpointError, match=r"mllm\.model .*says text_config\.num_hidden_layers=1e\+06"):
        check_model_dir(bad, "mllm.model")
    bad = _edited(sam2, tmp_path / "sam2", "config.json", "vision_config.backbone_config.blocks_per_stage", [10 ** 6])
    with pytest.raises(CheckpointError, match=r"blocks_per_stage=1e\+06"):
        check_model_dir(bad, "segmenter.model")


def test_the_sam2_segmenter_checks_its_checkpoint_before_building(checkpoints, tmp_path) -> None:
    from reasonseg.core.errors import CheckpointError
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    sam2 = checkpoints["lens"].parent / "lens-parts" / "sam2"
    bad = _edited(sam2, tmp_path / "sam2", "config.json", "vision_config.backbone_config.blocks_per_stage", [10 ** 6])
    with pytest.raises(CheckpointError, match=r"segmenter\.model .*blocks_per_stage=1e\+06"):
        Sam2Segmenter(str(bad), device="cpu")
