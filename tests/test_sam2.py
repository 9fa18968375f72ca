"""SAM2 segmenter and streaming tracker on tiny random-weight SAM2 checkpoints (real configs,
`save_pretrained`, loaded back through `segmenter.model` like users' `facebook/sam2.1-hiera-tiny`)."""
from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pytest

from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides
from reasonseg.core.errors import ConfigError, ModelCacheError
from reasonseg.core.prompt import Prompt
from rosnode_harness import rss_mb
from tiny_models import set_presence, tiny_sam2


def _segmenter(model_dir, **sets):
    from reasonseg.segmenters.registry import build_segmenter

    model = [f"segmenter.model={model_dir}"] if model_dir else []
    s = with_overrides(Settings(), ["segmenter.kind=sam2", "segmenter.backend=torch", *model,
                                    *[f"segmenter.{k}={v}" for k, v in sets.items()]])
    return build_segmenter(s.segmenter, s.cache_path)


def _smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 5)


@pytest.mark.parametrize("height, width", [(240, 320), (300, 120), (97, 413)])
def test_matches_the_transformers_reference_on_non_square_frames(tmp_path, height, width):
    """Our resize, normalisation, prompt coordinates and mask upsampling against Sam2Processor + Sam2Model."""
    import torch
    from transformers import Sam2ImageProcessor, Sam2Model, Sam2Processor

    model_dir = tiny_sam2(tmp_path / "sam2-image", video=False, presence_logit=6.0)
    seg = _segmenter(model_dir)
    assert not seg.can_track
    image = _smooth_image(height, width)
    box = (0.2 * width, 0.3 * height, 0.7 * width, 0.8 * height)
    neg = (0.4 * width, 0.5 * height)
    ours = seg.predict(seg.encode(image), Prompt(box=box, points=(neg,), point_labels=(0,)))

    proc = Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": 128, "width": 128}), target_size=128)
    ref_model = Sam2Model.from_pretrained(model_dir).eval()
    inputs = proc(images=image, input_boxes=[[list(box)]], input_points=[[[list(neg)]]], input_labels=[[[0]]],
                  return_tensors="pt")
    with torch.no_grad():
        out = ref_model(**inputs, multimask_output=False)
    ref_mask = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0, 0].numpy()
    assert ours.mask.shape == (height, width)
    assert np.abs(out.pred_masks[0, 0, 0].numpy() - ours.logits).max() < 1e-3
    assert (ours.mask == ref_mask).mean() > 0.99
    assert 0.05 < ours.mask.mean() < 0.95  # not a trivial all/nothing mask


def test_every_prompt_kind(sam2_dir):
    seg = _segmenter(sam2_dir)
    image = _smooth_image(180, 260)
    emb = seg.encode(image)
    prompts = [Prompt(box=(30, 40, 200, 150)),
               Prompt(points=((100, 90), (20, 20)), point_labels=(1, 0)),
               Prompt(box=(30, 40, 200, 150), points=((25, 30),), point_labels=(0,)),
               Prompt(mask_logits=np.where(np.arange(60 * 80).reshape(60, 80) % 80 < 40, 5.0, -5.0).astype(np.float32)),
               Prompt(sparse_embeddings=np.random.default_rng(0).standard_normal((1, 128)).astype(np.float32)),
               Prompt(box=(30, 40, 200, 150),
                      sparse_embeddings=np.random.default_rng(1).standard_normal((2, 128)).astype(np.float32))]
    logits = []
    for p in prompts:
        r = seg.predict(emb, p)
        assert r.mask.shape == (180, 260) and r.mask.dtype == bool and 0.0 <= r.score <= 1.5
        logits.append(r.logits)
    # each kind reaches the decoder: different prompts give different logits
    assert len({np.round(lg, 3).tobytes() for lg in logits}) == len(prompts)
    with pytest.raises(ValueError, match="sparse_embeddings have 64 channels; this SAM2 takes 128"):
        seg.predict(emb, Prompt(sparse_embeddings=np.ones((1, 64), np.float32)))
    with pytest.raises(ValueError, match="empty prompt"):
        Prompt()
    with pytest.raises(ValueError, match="x0 < x1"):
        Prompt(box=(10, 10, 5, 20))


def test_lite_sam_refuses_prompts_it_cannot_take(cache_dir):
    from reasonseg.segmenters.registry import build_segmenter

    seg = build_segmenter(Settings().segmenter, cache_dir)
    emb = seg.encode(_smooth_image(64, 64))
    assert seg.predict(emb, Prompt(box=(5, 5, 50, 50))).mask.shape == (64, 64)
    with pytest.raises(ValueError, match="does not take sparse_embeddings prompts .* use segmenter.kind: sam2"):
        seg.predict(emb, Prompt(sparse_embeddings=np.ones((1, 256), np.float32)))


def test_factory_errors_name_the_setting_and_the_fix(tmp_path, sam2_dir):
    with pytest.raises(ConfigError, match="needs segmenter.model"):
        _segmenter("")
    from reasonseg.segmenters.registry import build_segmenter

    s = with_overrides(Settings(), ["segmenter.kind=sam2", f"segmenter.model={sam2_dir}", "segmenter.backend=onnxruntime"])
    with pytest.raises(ConfigError, match="has no sam2_encoder.onnx.*reasonseg export sam2.*segmenter.backend=torch"):
        build_segmenter(s.segmenter, s.cache_path)  # a checkpoint, not an export, on onnxruntime
    with pytest.raises(ModelCacheError, match="SAM2 .*missing: no such file or folder; .*nothing downloads at run time"):
        _segmenter(tmp_path / "missing")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps({"model_type": "sam2_video"}))
    (corrupt / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(ModelCacheError, match="cannot be loaded"):
        _segmenter(corrupt)
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelCacheError, match="not SAM2"):
        _segmenter(other)
    with pytest.raises(ValueError, match="must be auto, cpu, cuda or cuda:N"):
        with_overrides(Settings(), ["segmenter.device=gpu0"])


def test_stream_memory_stays_bounded_over_500_frames(sam2_dir):
    seg = _segmenter(sam2_dir)
    rng = np.random.default_rng(0)
    frames = [_smooth_image(120, 160, seed=i) for i in range(8)]
    stream = seg.start_stream(frames[0], [Prompt(box=(20, 20, 100, 90)), Prompt(points=((130, 60),))],
                              memory_frames=6)
    sizes, rss = [], []
    for i in range(500):
        preds = stream.step(frames[rng.integers(len(frames))])
        assert len(preds) == 2 and preds[0].mask.shape == (120, 160)
        sizes.append(stream.stored_frames())
        if i in (100, 499):
            rss.append(rss_mb(os.getpid()))
    # 1 frame image + per object: the conditioning output, then the current and 6 past outputs and marks
    assert max(sizes[10:]) == min(sizes[10:]) == 1 + 2 * (1 + 7 + 7), sizes[-1]
    assert rss[1] - rss[0] < 40, f"RSS grew {rss[1] - rss[0]:.0f} MB over 400 frames"
    stream.close()
    assert stream.stored_frames() == 0


def test_stream_confidence_follows_object_presence(sam2_dir):
    from reasonseg.core.results import Grounding, Target
    from reasonseg.pipelines.memory_track import MemoryTrack

    seg = _segmenter(sam2_dir)
    image = _smooth_image(120, 160)
    g = Grounding("the thing", ("thing",), (Target("thing", 1.0, Prompt(box=(20, 20, 100, 90))),), "", "test", "mllm")
    track = MemoryTrack(seg, g, image, memory_frames=4, min_score=0.5)
    try:
        assert track.last is not None and track.confidence > 0.99  # the conditioning frame's result
        r = track.step(image)
        assert r.valid and r.note == "tracked" and track.confidence > 0.99 and r.mask.any()
        set_presence(seg.model, -6.0)  # the target leaves the scene
        r = track.step(image)
        assert not r.valid and r.note == "target lost" and track.confidence < 0.01 and not r.mask.any()
        with pytest.raises(ValueError, match="frame size changed"):
            track.step(_smooth_image(100, 160))
    finally:
        set_presence(seg.model, 6.0)
        track.close()


def test_mask_and_embedding_prompts_condition_the_stream(sam2_dir):
    """LENS / CORA hand SAM2 raw prompt embeddings; the tracker is conditioned with the decoded mask."""
    seg = _segmenter(sam2_dir)
    image = _smooth_image(120, 160)
    sparse = Prompt(sparse_embeddings=np.random.default_rng(0).standard_normal((1, 128)).astype(np.float32))
    expected = seg.predict(seg.encode(image), sparse).mask
    stream = seg.start_stream(image, [sparse], memory_frames=4)
    try:
        # SAM2 outputs a conditioning mask input as is (via its 4x low-res grid: fragmented random-weight
        # masks lose some boundary pixels): the first frame is the decoded mask
        assert (stream.last[0].mask == expected).mean() > 0.9 and 0.05 < expected.mean() < 0.95
        assert stream.step(image)[0].mask.shape == (120, 160)
    finally:
        stream.close()


def test_engine_tracks_between_groundings_and_regrounds_when_the_target_is_lost(sam2_dir, photos, load_rgb):
    """mllm + SAM2 in the engine: one grounding, then tracking steps only; a lost target asks the VLM again."""
    from openai_server import OpenAiServer, scripted_vlm
    from reasonseg.pipelines.registry import build_pipeline
    from reasonseg.runtime.engine import Frame, PerceptionEngine

    with OpenAiServer() as srv:
        srv.behaviour = scripted_vlm({"dog": (0.17, 0.38, 0.4, 0.95)})
        settings = with_overrides(Settings(), [
            "pipeline=mllm", "mllm.backend=openai", "mllm.model=scripted-vlm", f"mllm.base_url={srv.base_url}",
            "segmenter.kind=sam2", f"segmenter.model={sam2_dir}", "segmenter.backend=torch",
            "runtime.reground_period_s=0", "runtime.lost_frames_before_reground=2", "runtime.keyframe_period=1"])
        pipeline = build_pipeline(settings)
        outputs, errors = [], []
        engine = PerceptionEngine(pipeline, settings.runtime, on_error=errors.append)
        cam = engine.add_camera("", outputs.append)
        engine.start()
        image = cv2.resize(load_rgb(photos / "dog.jpg"), (192, 144))
        try:
            cam.set_instruction("the dog", 500)

            def pump(until, timeout=30.0):
                deadline = time.monotonic() + timeout
                i = 0
                while not until() and time.monotonic() < deadline:
                    cam.submit(Frame(image, stamp_ns=i))
                    i += 1
                    time.sleep(0.02)
                return until()

            assert pump(lambda: sum(o.result.note == "tracked" for o in outputs) >= 10)
            assert cam.stats["groundings"] == 1 and len(srv.requests) == 1, "tracking must not call the VLM"
            tracked = [o for o in outputs if o.result.note == "tracked"]
            assert all(o.result.valid and o.result.grounding.pipeline == "mllm" for o in tracked)
            assert "track_step" in tracked[-1].timings_ms and "sam_encoder" not in tracked[-1].timings_ms
            set_presence(pipeline.segmenter.model, -6.0)
            assert pump(lambda: cam.stats["groundings"] >= 2), "a lost target must be grounded again"
            assert len(srv.requests) >= 2 and not errors, errors
        finally:
            engine.stop()
            set_presence(pipeline.segmenter.model, 6.0)
