"""The training tree on tiny models and procedural data: augmentations, one step of each stage trains exactly
what the paper trains, 2-process DDP (gloo) ends with identical weights on both ranks, a killed run resumes
to the uninterrupted run's weights, and a tiny run's checkpoint serves its pipeline and exports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from reasonseg.cli.main import main as cli

ROOT = Path(__file__).resolve().parents[1]
L2L_CONFIG = ROOT / "training" / "configs" / "l2l_synthetic_tiny.yaml"
LENS_CONFIG = ROOT / "training" / "configs" / "lens_stage1_tiny.yaml"
CORA_CONFIG = ROOT / "training" / "configs" / "cora_synthetic_tiny.yaml"
SMALL_DATA = ["--data.init_args.num_samples", "40", "--data.init_args.num_val", "8", "--data.init_args.batch_size", "4",
              "--data.init_args.labeled_share", "0.25"]


# -- augmentations and data --------------------------------------------------------------------------------
def test_weak_flip_swaps_directions_and_moves_the_mask_with_the_image() -> None:
    from training.augment import swap_directions, weak_view

    assert swap_directions("The car on the left, right of the leftmost cone") == \
        "The car on the right, left of the rightmost cone"
    image = np.zeros((10, 20, 3), np.uint8)
    image[:, :5] = 255                                 # white on the left
    mask = (image[:, :, 0] > 0).astype(np.uint8)
    for seed in range(8):
        out, text, flipped, (m,) = weak_view(image, "the white block on the left", 16, np.random.default_rng(seed), mask)
        assert out.shape == (16, 16, 3) and m.dtype == np.uint8
        assert np.array_equal(m > 0, out[:, :, 0] > 127)  # the mask still covers the white pixels
        assert (text == "the white block on the right") == flipped and bool(m[:, -1].any()) == flipped


def test_strong_view_changes_appearance_never_geometry() -> None:
    from training.augment import STRONG_OPS, strong_image

    rng = np.random.default_rng(0)
    image = np.full((32, 32, 3), 60, np.uint8)
    image[8:20, 4:12] = (220, 40, 40)
    changed = 0
    for _ in range(20):
        out = strong_image(image, rng)
        assert out.shape == image.shape and out.dtype == np.uint8
        edge = np.abs(np.diff(out.astype(int).mean(-1), axis=1)).argmax(1)[10]
        assert edge in (2, 3, 4, 10, 11, 12), "the block's left / right edge stays where it was"
        changed += int(not np.array_equal(out, image))
    assert changed >= 10 and len(STRONG_OPS) == 9  # Table 8's pool


def test_eda_keeps_directions_and_the_filter_keeps_close_paraphrases(cache_dir) -> None:
    from reasonseg.grounding.text_embedding import TextEmbedder
    from reasonseg.grounding.wordnet import WordNet
    from training.augment import eda, filter_by_similarity

    wn = WordNet(cache_dir / "wordnet")
    variants = eda("the red car parked on the left of the truck", np.random.default_rng(0), wn.synonyms)
    assert len(variants) == 9 and all("left" in v for v in variants)  # the referent's direction survives
    assert any(w in " ".join(variants) for w in ("automobile", "auto", "motorcar", "machine"))  # synonyms used
    embed = TextEmbedder(cache_dir / "minilm").embed
    kept = filter_by_similarity("the red car on the left", ["the red automobile on the left", "a bowl of soup"], embed)
    assert kept == ["the red automobile on the left"]


def test_synthetic_scenes_are_seeded_and_their_expressions_single_out_the_target() -> None:
    from reasonseg.data.synthetic import make_scene

    for seed in range(30):
        a, b = make_scene(seed), make_scene(seed)
        assert np.array_equal(a.image, b.image) and a.expression == b.expression and a.mask.sum() >= 1
        t = a.objects[a.target]
        words = a.expression.split()
        matching = [o for o in a.objects if o.kind == t.kind and (o.colour in words or t.colour not in words)]
        if "left" in words:
            assert t.cx == min(o.cx for o in matching)
        elif "right" in words:
            assert t.cx == max(o.cx for o in matching)
        elif "middle" not in words:
            assert matching == [t], a.expression


# -- one step trains exactly what each paper trains -----------------------------------------------------------
def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not np.array_equal(before[k].numpy(), after[k].numpy())}


def _one_step(module, datamodule) -> set[str]:
    import lightning as L

    before = {k: v.detach().clone() for k, v in module.state_dict().items()}
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(module, datamodule=datamodule)
    return _changed(before, module.state_dict())


@pytest.fixture(scope="module")
def l2l_init(tmp_path_factory) -> Path:
    from tiny_models import tiny_l2l

    return tiny_l2l(tmp_path_factory.mktemp("l2l") / "init")


@pytest.mark.parametrize("mode", ["rple", "fixed", "none"])
def test_one_l2l_step_updates_the_segmentor_and_only_rples_own_networks(l2l_init, mode) -> None:
    from training.data import SemiSupervisedReferring
    from training.modules.l2l import L2LModule

    module = L2LModule(str(l2l_init), pseudo_label=mode, lr=1e-3)
    dm = SemiSupervisedReferring(str(l2l_init), num_samples=16, num_val=4, batch_size=4, labeled_share=0.25,
                                 max_text_len=12)
    params = {n for n, _ in module.named_parameters()}
    changed = _one_step(module, dm)
    model_params = {n for n in params if n.startswith("model.")}
    # the whole segmentor learns (Swin, BERT, SESM, FPN head): every parameter moved in one AdamW step
    assert model_params <= changed, sorted(model_params - changed)[:5]
    rl = {n for n in params if n.startswith(("actor.", "critic."))}
    if mode == "rple":
        assert rl and rl <= changed
        # target networks follow by Polyak averaging only; the threshold memory is a buffer
        assert {n for n in changed if n.startswith("target_")} and "prev_action" in changed
        assert changed - model_params - rl <= {n for n in module.state_dict() if n.startswith("target_")} | {"prev_action"}
    else:
        assert not rl and changed == model_params


def test_l2l_learning_rates_decay_polynomially_over_the_run(l2l_init) -> None:
    """App. B.3: poly decay per step over the whole run, the segmentor's and RPLE's learning rates alike."""
    import lightning as L

    from training.data import SemiSupervisedReferring
    from training.modules.l2l import L2LModule

    seen: list[list[float]] = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append([g["lr"] for g in trainer.optimizers[0].param_groups])

    module = L2LModule(str(l2l_init), pseudo_label="rple", lr=1e-3, rl_lr=2e-4, lr_power=0.9)
    dm = SemiSupervisedReferring(str(l2l_init), num_samples=16, num_val=4, batch_size=4, labeled_share=0.25,
                                 max_text_len=12)
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0, callbacks=[Record()])
    trainer.fit(module, datamodule=dm)
    total = trainer.estimated_stepping_batches
    assert total == 4 and len(seen) == 4
    for step, lrs in enumerate(seen):
        factor = (1 - step / total) ** 0.9
        np.testing.assert_allclose(lrs, [1e-3 * factor, 2e-4 * factor], rtol=1e-6)


@pytest.fixture(scope="module")
def lens_init(tmp_path_factory) -> Path:
    from tiny_models import tiny_lens_release

    ckpt, _ = tiny_lens_release(tmp_path_factory.mktemp("lens") / "init")
    return ckpt


def test_one_lens_stage1_step_updates_only_queries_and_connector(lens_init) -> None:
    from training.data_lens import LensReferringData
    from training.modules.lens import LensStage1Module

    module = LensStage1Module(str(lens_init), lr=1e-3)
    changed = _one_step(module, LensReferringData(str(lens_init), num_samples=4, num_val=2, batch_size=2))
    head = {n for n, p in module.named_parameters() if n.startswith("model.head.")}
    assert changed == head, (sorted(changed - head)[:5], sorted(head - changed)[:5])


def test_one_lens_grpo_step_trains_the_language_model_and_sam_decoder_not_the_encoders(lens_init) -> None:
    from training.data_lens import LensReferringData
    from training.modules.lens import LensGrpoModule

    module = LensGrpoModule(str(lens_init), num_generations=3, max_new_tokens=6, lr=1e-3)
    trainable = {f"model.{n}" for n in module.trainable}
    mllm = module.model.mllm
    if mllm.lm_head.weight is mllm.model.language_model.embed_tokens.weight:
        trainable.add("model.mllm.lm_head.weight")  # tied to the embeddings: one tensor, two state-dict names
    changed = _one_step(module, LensReferringData(str(lens_init), num_samples=2, num_val=1, batch_size=2,
                                                  with_answer=False))
    assert changed <= trainable, sorted(changed - trainable)[:5]
    assert any(n.startswith("model.mllm.model.language_model.layers.") for n in changed)
    assert any(n.startswith("model.sam.mask_decoder.") for n in changed) and any(n.startswith("model.head.") for n in changed)
    assert not any(n.startswith(("model.mllm.model.visual.", "model.sam.vision_encoder.", "reference.")) for n in changed)


# -- the product command line: DDP, resume, pipelines, export ------------------------------------------------
def _fit_env() -> dict[str, str]:
    """`python -m training` from any folder, one thread per process (DDP ranks share the 2 cores)."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _wait_past_first_checkpoint(last: Path, proc: subprocess.Popen) -> None:
    """Until the run has written `last` (or ended), then half a second into the next epoch."""
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)


def _fit(cwd: Path, config: Path, *extra: str, timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", "fit", "--config", str(config), *extra], cwd=cwd,
                          env=_fit_env(), capture_output=True, text=True, timeout=timeout)


def _digests(run_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in sorted(run_dir.rglob("weights-rank*.sha256"))}


def test_two_process_ddp_ends_with_identical_weights_on_both_ranks(l2l_init, lens_init, tmp_path) -> None:
    runs = {
        "l2l": (L2L_CONFIG, ["--model.init_args.model_dir", str(l2l_init), "--data.init_args.tokenizer_dir",
                             str(l2l_init), "--trainer.max_steps", "2", *SMALL_DATA]),
        "lens": (LENS_CONFIG, ["--model.init_args.checkpoint", str(lens_init), "--data.init_args.checkpoint",
                               str(lens_init), "--trainer.max_steps", "2", "--data.init_args.num_samples", "8"]),
    }
    for name, (config, extra) in runs.items():
        cwd = tmp_path / name
        cwd.mkdir()
        r = _fit(cwd, config, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.limit_val_batches",
                 "0", *extra)
        assert r.returncode == 0, r.stderr[-3000:]
        digests = _digests(cwd)
        assert set(digests) == {"weights-rank0.sha256", "weights-rank1.sha256"}, (name, digests)
        assert len(set(digests.values())) == 1, f"{name}: the ranks' weights differ"


def test_a_killed_run_resumes_to_the_uninterrupted_runs_weights(l2l_init, tmp_path) -> None:
    args = ["--model.init_args.model_dir", str(l2l_init), "--data.init_args.tokenizer_dir", str(l2l_init),
            "--trainer.max_epochs", "3", "--trainer.check_val_every_n_epoch", "1", *SMALL_DATA]
    whole = tmp_path / "whole"
    whole.mkdir()
    assert _fit(whole, L2L_CONFIG, *args).returncode == 0
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "training", "fit", "--config", str(L2L_CONFIG), *args], cwd=killed,
                            env=_fit_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "runs" / "l2l_tiny" / "checkpoints" / "last.ckpt"
    _wait_past_first_checkpoint(last, proc)
    proc.send_signal(signal.SIGKILL)  # no clean-up, no final checkpoint
    proc.wait()
    assert last.exists() and not _digests(killed), "the run must die before it ends"
    r = _fit(killed, L2L_CONFIG, *args, "--ckpt_path", str(last))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _digests(killed) == _digests(whole) and len(_digests(whole)) == 1
    # the run's segmentor, as the l2l pipeline and export/ read it
    model = whole / "runs" / "l2l_tiny" / "model"
    assert (whole / "runs" / "l2l_tiny" / "logs" / "version_0" / "curves.png").is_file()
    assert cli(["export", "l2l", "--checkpoint", str(model), "--out", str(tmp_path / "onnx")]) == 0
    manifest = json.loads((tmp_path / "onnx" / "l2l_segmentor.onnx.manifest.json").read_text())
    assert manifest["parity"]["mask_logits"]["max_rel"] <= 1e-4


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_exits_130_and_keeps_its_checkpoints(l2l_init, tmp_path, sig) -> None:
    """Ctrl-C in the terminal, SIGTERM from a scheduler: Lightning stops gracefully but exits 1, which reads as a
    failure to a shell or a job array; the stop is reported as the other commands report it."""
    log = tmp_path / "fit.log"
    proc = subprocess.Popen([sys.executable, "-m", "training", "fit", "--config", str(L2L_CONFIG),
                             "--model.init_args.model_dir", str(l2l_init), "--data.init_args.tokenizer_dir",
                             str(l2l_init), "--trainer.max_epochs", "50", *SMALL_DATA], cwd=tmp_path, env=_fit_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    last = tmp_path / "runs" / "l2l_tiny" / "checkpoints" / "last.ckpt"
    _wait_past_first_checkpoint(last, proc)
    os.killpg(proc.pid, sig)
    try:
        assert proc.wait(timeout=60) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text() and last.is_file()


def test_tiny_runs_serve_their_pipelines(l2l_init, lens_init, cora_ckpt, tmp_path, photos) -> None:
    for name, config, extra, pipeline, setting in (
            ("l2l", L2L_CONFIG, ["--model.init_args.model_dir", str(l2l_init), "--data.init_args.tokenizer_dir",
                                 str(l2l_init), *SMALL_DATA], "l2l", "l2l.model"),
            ("lens", LENS_CONFIG, ["--model.init_args.checkpoint", str(lens_init), "--data.init_args.checkpoint",
                                   str(lens_init), "--data.init_args.num_samples", "4"], "lens", "lens.model"),
            ("cora", CORA_CONFIG, ["--model.init_args.checkpoint", str(cora_ckpt), "--data.init_args.checkpoint",
                                   str(cora_ckpt), "--data.init_args.num_labeled", "2", "--data.init_args.num_val",
                                   "1"], "cora", "cora.model")):
        cwd = tmp_path / name
        cwd.mkdir()
        r = _fit(cwd, config, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", *extra)
        assert r.returncode == 0, r.stderr[-3000:]
        model = next(cwd.rglob("model"))
        out = tmp_path / f"out_{name}"
        assert cli(["segment", str(photos / "dog.jpg"), "the dog", "--pipeline", pipeline, "--set",
                    f"{setting}={model}", "--out", str(out)]) == 0
        assert json.loads((out / "result.json").read_text())["pipeline"] == pipeline
    assert cli(["export", "lens-connector", "--checkpoint", str(next((tmp_path / "lens").rglob("model"))), "--out",
                str(tmp_path / "lens_onnx")]) == 0
    assert cli(["export", "cora-projection", "--checkpoint", str(next((tmp_path / "cora").rglob("model"))), "--out",
                str(tmp_path / "cora_onnx")]) == 0
    assert (tmp_path / "cora" / "runs" / "cora_tiny" / "logs" / "version_0" / "metrics.csv").read_text().count("val/gIoU")


def test_offline_priors_are_written_once_per_sample_and_read_back(l2l_init, tmp_path) -> None:
    """`python -m training.priors`: the embedded pipeline stands in for MLLM + SAM2 (same interface); a second
    run skips what is there; the data module serves the stored priors aligned with the weak view."""
    import yaml

    from training.data import SemiSupervisedReferring
    from training.priors import main as priors_main

    config = yaml.safe_load(L2L_CONFIG.read_text())
    config["data"]["init_args"].update(tokenizer_dir=str(l2l_init), num_samples=4, num_val=2,
                                       priors_dir=str(tmp_path / "priors"))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert priors_main(["--config", str(tmp_path / "c.yaml"), "--pipeline", "refine"]) == 0
    files = sorted((tmp_path / "priors").glob("*.npy"))
    assert len(files) == 6 and all(np.load(f).shape == (64, 64) for f in files)
    stamp = [f.stat().st_mtime_ns for f in files]
    assert priors_main(["--config", str(tmp_path / "c.yaml"), "--pipeline", "refine"]) == 0
    assert [f.stat().st_mtime_ns for f in files] == stamp  # cached: nothing recomputed
    dm = SemiSupervisedReferring(str(l2l_init), num_samples=4, num_val=2, labeled_share=0.25, max_text_len=12,
                                 priors_dir=str(tmp_path / "priors"))
    dm.setup()
    item = dm.unlabeled[0]
    assert item["prior"].shape == (1, 64, 64) and 0.0 <= float(item["prior"].min()) <= float(item["prior"].max()) <= 1.0


def test_l2l_pipeline_errors_are_one_line(l2l_init, tmp_path, photos, capsys) -> None:
    import shutil

    assert cli(["segment", str(photos / "dog.jpg"), "the dog", "--pipeline", "l2l", "--out", str(tmp_path / "a")]) == 2
    broken = tmp_path / "broken"
    shutil.copytree(l2l_init, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert cli(["segment", str(photos / "dog.jpg"), "the dog", "--pipeline", "l2l", "--set", f"l2l.model={broken}",
                "--out", str(tmp_path / "b")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 2 and "l2l.model" in err[0] and "not a readable L2L segmentor checkpoint" in err[1], err


# -- CORA's instruction sets ------------------------------------------------------------------------------
def _boxes_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def test_cora_relations_use_the_camera_frame_and_polygons_follow_the_mask() -> None:
    from training.cora_instructions import mask_polygons, rephrasings, spatial_relation

    car, person = _boxes_mask(60, 80, 5, 30, 25, 50), _boxes_mask(60, 80, 50, 28, 56, 48)
    assert spatial_relation(car, person) == "to the left of" and spatial_relation(person, car) == "to the right of"
    near, far = _boxes_mask(60, 80, 30, 40, 40, 58), _boxes_mask(60, 80, 32, 20, 38, 30)
    assert spatial_relation(near, far) == "in front of" and spatial_relation(far, near) == "behind"
    (poly,) = mask_polygons(car)
    assert sorted(poly) == [(5, 30), (5, 49), (24, 30), (24, 49)]
    variants = rephrasings("the red car")
    assert len(set(variants)) == 7 and all("the red car" in v for v in variants)


def test_cora_conditional_instructions_from_an_llm_are_validated_and_fall_back_to_templates() -> None:
    from openai_server import OpenAiServer
    from reasonseg.grounding.llm.client import ChatLlm
    from reasonseg.models.cora import ANCHOR_BOX_TOKEN, ANCHOR_MASK_TOKEN
    from training.cora_instructions import InstructionWriter

    anchor = ANCHOR_MASK_TOKEN + ANCHOR_BOX_TOKEN
    masks = [_boxes_mask(60, 80, 5, 30, 25, 50), _boxes_mask(60, 80, 50, 28, 56, 48)]
    classes = ["car", "person"]
    offline = InstructionWriter().conditional(classes, masks, 0, 1)
    assert offline.text == f"Can you segment the car that is to the left of {anchor} in this image?"
    assert offline.source == "template" and (offline.target, offline.anchor) == (0, 1)
    with OpenAiServer() as srv:
        def answer(messages):
            if "noun phrase" in messages[0]["content"]:
                return '{"target": "the small red hatchback", "anchor": "the pedestrian in a coat"}'
            return json.dumps({"question": f"Can you segment the small red hatchback to the left of {anchor}?"})
        srv.behaviour = answer
        llm = ChatLlm("writer", base_url=srv.base_url, api_key=None, timeout_s=5)
        got = InstructionWriter(llm).conditional(classes, masks, 0, 1)
        assert got.source == "llm" and got.text.count(anchor) == 1 and "hatchback" in got.text
        sent = json.loads(srv.requests[0]["body"]["messages"][1]["content"])
        assert sent["objects"][0]["polygon"] and "camera" in srv.requests[1]["body"]["messages"][0]["content"]
        srv.behaviour = lambda messages: '{"target": "a car", "anchor": "a man", "question": "segment the car"}'
        bad = InstructionWriter(llm).conditional(classes, masks, 0, 1)  # no anchor placeholder: refused
        assert bad.source.startswith("template (llm:") and bad.text == offline.text
        srv.behaviour = "http500"
        down = InstructionWriter(llm).conditional(classes, masks, 0, 1)
        assert down.source.startswith("template (llm:") and down.text == offline.text


def test_node_serves_pipeline_l2l_over_dds(l2l_init, tmp_path, photos, load_rgb) -> None:
    """The shipped driving.yaml with pipeline l2l and l2l.model at a tiny segmentor: the node publishes l2l
    results (valid or "not in the image": random weights) on its topics, every frame, with no LLM."""
    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    from rosnode_harness import Client, shipped_params, start_node, stop_node, unique_domain_id

    def edit(params: dict) -> None:
        params.update(pipeline="l2l")
        params["l2l"].update(model=str(l2l_init), device="cpu")

    domain = unique_domain_id()
    proc, log = start_node(tmp_path, domain, params_file=shipped_params(tmp_path, edit))
    client = Client(domain)
    try:
        client.wait_node_ready(proc)
        client.instruct("the dog")
        assert client.pump(load_rgb(photos / "dog.jpg")[:, :, ::-1].copy(), lambda: len(client.results_of("l2l")) >= 3)
        assert client.results_of("l2l")[0].grounding_source == "l2l"
        assert "Traceback" not in log.read_text()
    finally:
        client.close()
        stop_node(proc)


@pytest.fixture(scope="module")
def cora_ckpt(tmp_path_factory) -> Path:
    from tiny_models import tiny_qwen25_vl, tiny_sam2
    from training.init_model import main as init_model

    root = tmp_path_factory.mktemp("cora_train")
    qwen, sam2 = tiny_qwen25_vl(root / "qwen"), tiny_sam2(root / "sam2", presence_logit=10.0)
    assert init_model(["cora", "--qwen", str(qwen), "--sam2", str(sam2), "--dtype", "float32", "--out",
                       str(root / "ckpt")]) == 0
    return root / "ckpt"


def test_init_model_builds_lens_from_base_checkpoints(tmp_path) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Sam2VideoModel

    from reasonseg.models.lens import LensModel
    from tiny_models import tiny_qwen25_vl, tiny_sam2
    from training.init_model import main as init_model

    qwen, sam2 = tiny_qwen25_vl(tmp_path / "qwen"), tiny_sam2(tmp_path / "sam2")
    assert init_model(["lens", "--qwen", str(qwen), "--sam2", str(sam2), "--num-queries", "4", "--dtype", "float32",
                       "--out", str(tmp_path / "lens")]) == 0
    model = LensModel.from_pretrained(tmp_path / "lens", dtype=torch.float32)  # the release layout, read back
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen)
    sam = Sam2VideoModel.from_pretrained(sam2)
    assert model.num_queries == 4
    for ours, theirs in ((model.mllm, base), (model.sam, sam)):
        mine = dict(ours.named_parameters())
        assert all(torch.equal(mine[n], p) for n, p in theirs.named_parameters()), "base weights must load as they are"
    queries = model.head.learnable_query
    assert torch.isfinite(queries).all() and queries.std() > 0  # freshly initialised, not left empty


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_one_cora_step_of_each_stage_trains_only_lisas_set(cora_ckpt, stage) -> None:
    from training.data_cora import CoraData
    from training.modules.cora import CoraModule

    module = CoraModule(str(cora_ckpt), stage=stage, lr=1e-3)
    trainable = {f"model.{n}" for n in module.trainable}
    mllm = module.model.mllm
    if mllm.lm_head.weight is mllm.model.language_model.embed_tokens.weight:
        trainable.add("model.mllm.lm_head.weight")  # tied to the embeddings
    changed = _one_step(module, CoraData(str(cora_ckpt), stage=stage, num_labeled=4, num_unlabeled=4))
    assert changed and changed <= trainable, sorted(changed - trainable)[:5]
    assert any(n.startswith("model.seg_projection.") for n in changed)
    assert any(n.startswith("model.sam.mask_decoder.") for n in changed)
    assert any(n.startswith("model.anchor.") for n in changed) == (stage == 2)  # anchors only in stage 2's set
    assert not any(n.startswith(("model.mllm.model.visual.", "model.sam.vision_encoder.",
                                 "model.mllm.model.language_model.layers.")) for n in changed)
