"""`python -m training` (issue 29): wrong paths and unreadable checkpoints are one line with the fix and exit 2
(item 15, they were 40-75-line tracebacks); every checkpoint the run writes carries a sha256 that is checked on
resume and on load (item 16: 64 corrupted bytes inside a tensor resumed with exit 0, then trained to NaN); a
second SIGTERM still ends the run cleanly with 130 (item 17: it exited -15)."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
L2L_CONFIG = ROOT / "training" / "configs" / "l2l_synthetic_tiny.yaml"
SMALL = ["--data.init_args.num_samples", "12", "--data.init_args.num_val", "4", "--data.init_args.batch_size", "4",
         "--data.init_args.labeled_share", "0.5", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _args(init: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training", "fit", "--config", str(L2L_CONFIG), "--model.init_args.model_dir",
            str(init), "--data.init_args.tokenizer_dir", str(init), *SMALL, *extra]


def _fit(cwd: Path, init: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_args(init, *extra), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _one_line_error(r: subprocess.CompletedProcess, *named: str) -> str:
    """Exit 2, no traceback, and the error as the one `training: error:` line naming `named`."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("training: error: ")]
    assert len(errors) == 1 and errors[0] == r.stderr.strip().splitlines()[-1], r.stderr[-3000:]
    for text in named:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def l2l_init(tmp_path_factory) -> Path:
    from tiny_models import tiny_l2l

    return tiny_l2l(tmp_path_factory.mktemp("l2l") / "init")


@pytest.fixture(scope="module")
def run(l2l_init, tmp_path_factory) -> Path:
    """One finished tiny run (3 epochs): its checkpoints and its segmentor for the pipeline."""
    cwd = tmp_path_factory.mktemp("run")
    r = _fit(cwd, l2l_init, "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "1")
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd / "runs" / "l2l_tiny"


# -- item 15: one line with the fix -------------------------------------------------------------------------
def test_missing_paths_are_one_line_naming_the_setting_and_the_fix(l2l_init, tmp_path) -> None:
    r = _fit(tmp_path, tmp_path / "no_model")
    _one_line_error(r, str(tmp_path / "no_model"), "training.init_model")
    r = _fit(tmp_path, l2l_init, "--data.init_args.source", "refcoco", "--data.init_args.root",
             str(tmp_path / "no_data"))
    _one_line_error(r, "data.init_args.root", str(tmp_path / "no_data"), "refcoco")
    r = _fit(tmp_path, l2l_init, "--data.init_args.tokenizer_dir", str(tmp_path / "no_tok"))
    _one_line_error(r, "data.init_args.tokenizer_dir", str(tmp_path / "no_tok"))


@pytest.mark.parametrize("damage", ["empty", "random", "truncated", "absent", "unrecorded"])
def test_an_unreadable_checkpoint_to_resume_is_one_line(run, l2l_init, tmp_path, damage) -> None:
    """No sha256 beside these (a checkpoint from elsewhere): what the file itself shows is still checked."""
    ckpt = tmp_path / "last.ckpt"
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    if damage != "absent":
        damaged = {"empty": b"", "random": os.urandom(5000), "truncated": data[: len(data) // 2]}
        ckpt.write_bytes(damaged.get(damage, data))
    if damage == "unrecorded":
        _corrupt_inside_a_tensor(ckpt)
    r = _fit(tmp_path, l2l_init, "--trainer.max_epochs", "3", "--ckpt_path", str(ckpt))
    _one_line_error(r, str(ckpt), "--ckpt_path", *(["does not match its CRC"] if damage == "unrecorded" else []))


# -- item 16: sha256 beside every checkpoint, checked --------------------------------------------------------
def test_every_checkpoint_and_the_pipeline_model_carry_their_sha256(run) -> None:
    written = sorted(run.rglob("*.ckpt")) + sorted((run / "model").glob("*.safetensors"))
    assert len(written) >= 3, written  # the epoch checkpoint, last.ckpt, the segmentor
    for path in written:
        record = path.with_name(path.name + ".sha256").read_text().split()
        assert record == [hashlib.sha256(path.read_bytes()).hexdigest(), path.name], path
    # a checkpoint that ModelCheckpoint replaced took its record with it
    assert {p.name[:-len(".sha256")] for p in run.rglob("*.ckpt.sha256")} == {p.name for p in run.rglob("*.ckpt")}


def _corrupt_inside_a_tensor(path: Path, n: int = 64) -> None:
    """Overwrite `n` bytes in the middle of the largest tensor record of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with path.open("r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
        start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(start)
        flipped = bytes(b ^ 0xFF for b in f.read(n))
        f.seek(start)
        f.write(flipped)


def test_a_checkpoint_damaged_after_writing_is_refused_on_resume(run, l2l_init, tmp_path) -> None:
    ckpt = tmp_path / "last.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", ckpt)
    shutil.copy(run / "checkpoints" / "last.ckpt.sha256", tmp_path / "last.ckpt.sha256")
    _corrupt_inside_a_tensor(ckpt)
    r = _fit(tmp_path, l2l_init, "--trainer.max_epochs", "3", "--ckpt_path", str(ckpt))
    _one_line_error(r, str(ckpt), "sha256")
    assert not (tmp_path / "runs" / "l2l_tiny" / "model").exists(), "nothing may be trained from it"


def test_a_pipeline_model_damaged_after_writing_is_refused_on_load(run, tmp_path, photos, capsys) -> None:
    from reasonseg.cli.main import main as cli
    from reasonseg.core.errors import CheckpointError
    from reasonseg.models.l2l import L2LSegmentor

    model = tmp_path / "model"
    shutil.copytree(run / "model", model)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4096:-4096 + 64] = os.urandom(64)  # inside the last tensors: the header still parses
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors does not match the sha256 recorded"):
        L2LSegmentor.from_pretrained(model)
    assert cli(["segment", str(photos / "dog.jpg"), "the dog", "--pipeline", "l2l", "--set", f"l2l.model={model}",
                "--out", str(tmp_path / "out")]) == 2
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err.startswith("reasonseg: error: ") and "does not match the sha256 recorded" in err, err
    L2LSegmentor.from_pretrained(run / "model")  # the intact one loads


# -- item 17: a second SIGTERM -------------------------------------------------------------------------------
def test_a_second_sigterm_still_ends_the_run_with_130(l2l_init, tmp_path) -> None:
    log = tmp_path / "fit.log"
    proc = subprocess.Popen(_args(l2l_init, "--trainer.max_epochs", "500"), cwd=tmp_path, env=_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    last = tmp_path / "runs" / "l2l_tiny" / "checkpoints" / "last.ckpt"
    try:
        deadline = time.monotonic() + 240
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        # a scheduler that repeats its SIGTERM, during the shutdown and the interpreter's exit alike
        while proc.poll() is None and time.monotonic() < deadline:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.15)
        assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text() and last.is_file()
