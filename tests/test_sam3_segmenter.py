"""SAM 3 segmenter (`segmenter.kind: sam3`, torch) and its streaming tracker on tiny random-weight SAM 3 tracker
checkpoints (real configs, `save_pretrained`, loaded back through `segmenter.model` as users' facebook/sam3)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from reasonseg.core.errors import ConfigError, ModelCacheError
from reasonseg.core.prompt import Prompt
from reasonseg.core.settings import Settings
from reasonseg.settings.loading import with_overrides
from tiny_models import set_presence, tiny_sam2, tiny_sam3_tracker

H, W = 96, 128  # frames: not square, not the model's 112 px side
BOX = (20.0, 24.0, 90.0, 80.0)


def _settings(model_dir, *sets: str):
    model = [f"segmenter.model={model_dir}"] if model_dir is not None else []
    return with_overrides(Settings(), ["segmenter.kind=sam3", "segmenter.device=cpu", *model, *sets])


def _segmenter(model_dir, *sets: str):
    from reasonseg.segmenters.registry import build_segmenter

    s = _settings(model_dir, *sets)
    return build_segmenter(s.segmenter, s.cache_path)


def _image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (0, 0), 5)


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory) -> Path:
    """sam3_tracker_video reading 3 past masks and 3 past object pointers (num_maskmem - 1,
    max_object_pointers_in_encoder - 1); its object head says "present"."""
    return tiny_sam3_tracker(tmp_path_factory.mktemp("sam3") / "tiny-sam3", presence_logit=6.0, num_maskmem=4,
                             max_object_pointers_in_encoder=4)


@pytest.fixture(scope="module")
def sam3_image_dir(tmp_path_factory) -> Path:
    return tiny_sam3_tracker(tmp_path_factory.mktemp("sam3i") / "tiny-sam3-image", video=False, presence_logit=6.0)


def test_box_prompt_matches_the_transformers_reference(sam3_image_dir):
    """Our resize, [-1, 1] normalisation, box / point coordinates and mask upsampling against
    Sam3TrackerProcessor + Sam3TrackerModel on a non-square frame."""
    import torch
    from transformers import Sam3ImageProcessor, Sam3TrackerModel, Sam3TrackerProcessor

    seg = _segmenter(sam3_image_dir, "segmenter.backend=auto")  # auto -> torch, the only SAM 3 backend
    assert seg.name == "sam3" and not seg.can_track and seg.input_size == 112
    image = _image()
    neg = (60.0, 50.0)
    ours = seg.predict(seg.encode(image), Prompt(box=BOX, points=(neg,), point_labels=(0,)))
    assert ours.mask.shape == (H, W) and ours.mask.dtype == bool
    assert isinstance(ours.score, float) and 0.0 <= ours.score <= 1.5  # predicted IoU

    proc = Sam3TrackerProcessor(image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112},
                                                                    mask_size={"height": 32, "width": 32}),
                                target_size=112)
    ref = Sam3TrackerModel.from_pretrained(sam3_image_dir, local_files_only=True).eval()
    inputs = proc(images=image, input_boxes=[[list(BOX)]], input_points=[[[list(neg)]]], input_labels=[[[0]]],
                  return_tensors="pt")
    # the input: the processor's resize antialiases, OpenCV's does not; on a smooth frame they agree closely
    pixels = seg.pixels(image)[None]
    assert pixels.shape == inputs["pixel_values"].shape
    assert (pixels - inputs["pixel_values"]).abs().mean() < 0.01
    # prompts, decoding and mask upsampling: the reference on our pixels must give our logits
    inputs["pixel_values"] = pixels
    with torch.no_grad():
        out = ref(**inputs, multimask_output=False)
    ref_logits = out.pred_masks[0, 0, 0].numpy()
    ref_mask = proc.post_process_masks(out.pred_masks, inputs["original_sizes"])[0][0, 0].numpy()
    assert np.abs(ref_logits - ours.logits).max() < 1e-3 * np.abs(ref_logits).max()
    assert (ours.mask == ref_mask).mean() > 0.99
    assert 0.05 < ours.mask.mean() < 0.95  # not a trivial all / nothing mask


def test_box_and_point_prompts_reach_the_decoder_deterministically(sam3_dir):
    seg = _segmenter(sam3_dir)
    assert seg.can_track
    image = _image(1)
    emb = seg.encode(image)
    prompts = [Prompt(box=BOX), Prompt(box=(60.0, 10.0, 120.0, 90.0)), Prompt(points=((40.0, 50.0),)),
               Prompt(points=((40.0, 50.0), (100.0, 20.0)), point_labels=(1, 0)),
               Prompt(box=BOX, points=((30.0, 30.0),), point_labels=(0,))]
    logits = []
    for p in prompts:
        r = seg.predict(emb, p)
        assert r.mask.shape == (H, W) and r.mask.dtype == bool and np.isfinite(r.score)
        assert r.logits.shape == (32, 32) and r.logits.dtype == np.float32  # the 4x-of-the-grid low-res mask
        logits.append(r.logits)
    # the box and the clicks are encoded where they are: moving / adding any of them changes the mask
    assert len({np.round(lg, 3).tobytes() for lg in logits}) == len(prompts)
    # the same frame and prompt give the same answer, in this segmenter and in a second one from the same dir
    again = _segmenter(sam3_dir)
    for seg2 in (seg, again):
        r = seg2.predict(seg2.encode(image), prompts[0])
        assert np.array_equal(r.logits, logits[0])
    with pytest.raises(ValueError, match="sparse_embeddings have 64 channels; this SAM 3 takes 128"):
        seg.predict(emb, Prompt(sparse_embeddings=np.ones((1, 64), np.float32)))


def test_tracking_memory_is_bounded_by_memory_frames_and_loses_nothing_the_model_reads(sam3_dir):
    """memory_frames=2 holds a fixed number of outputs: after a step the current one and 2 past ones, i.e. the 3
    this checkpoint reads at the next frame, so its masks are those of transformers' unbounded session;
    memory_frames=1 drops one it reads."""
    import torch
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

    s = _settings(sam3_dir, "segmenter.memory_frames=2")
    seg = _segmenter(sam3_dir, "segmenter.memory_frames=2")
    frames = [_image(10 + i) for i in range(6)]
    prompts = [Prompt(box=BOX), Prompt(points=((100.0, 40.0),))]
    stream = seg.start_stream(frames[0], prompts, s.segmenter.memory_frames)
    ours, sizes = [[p.logits for p in stream.last]], []
    for f in frames[1:]:
        preds = stream.step(f)
        assert len(preds) == 2 and all(p.mask.shape == (H, W) and p.score > 0.99 for p in preds)
        ours.append([p.logits for p in preds])
        sizes.append(stream.stored_frames())
    # 1 frame image + per object: the conditioning output, then the current and 2 past outputs and marks
    assert sizes[2:] == [1 + 2 * (1 + 3 + 3)] * 3, sizes
    assert len(stream.session.cache._vision_features) <= 1
    with pytest.raises(ValueError, match="frame size changed"):
        stream.step(_image(0, 64, 64))
    stream.close()
    assert stream.stored_frames() == 0

    # the reference: the same prompts in a session that keeps everything
    session = Sam3TrackerVideoInferenceSession(video_height=H, video_width=W, dtype=torch.float32)
    for obj_id, p in enumerate(prompts):
        coords, labels = seg._model_points(p, (H, W))
        session.add_point_inputs(session.obj_id_to_idx(obj_id), 0,
                                 {"point_coords": torch.from_numpy(coords)[None, None],
                                  "point_labels": torch.from_numpy(labels)[None, None]})
    session.obj_with_new_inputs = [0, 1]
    ref = []
    for i, f in enumerate(frames):
        out = seg.model(inference_session=session, frame=seg.pixels(f), frame_idx=i)
        ref.append(out.pred_masks[:, 0].float().numpy())
    assert len(session.output_dict_per_obj[0]["non_cond_frame_outputs"]) == 5  # it forgot nothing
    # bitwise: the same ops on the same tensors (CPU); random weights make memory's pull small (~1e-6), so
    # "close" would not tell a dropped memory from a kept one
    for t in range(len(frames)):
        assert np.array_equal(np.stack(ours[t]), ref[t]), t

    short = seg.start_stream(frames[0], prompts, 1)
    diverged = [np.abs(np.stack([p.logits for p in short.step(f)]) - ref[t]).max()
                for t, f in enumerate(frames[1:], start=1)]
    short.close()
    # frames 1-3 read no further back than a 1-frame bank holds (frame 0 is the conditioning output, always
    # kept); frames 4 and 5 read 3 frames back, which it dropped
    assert max(diverged[:3]) == 0.0 and min(diverged[3:]) > 0.0, diverged


def test_memory_track_follows_object_presence(sam3_dir):
    from reasonseg.core.results import Grounding, Target
    from reasonseg.pipelines.memory_track import MemoryTrack

    seg = _segmenter(sam3_dir)
    image = _image(2)
    g = Grounding("the thing", ("thing",), (Target("thing", 1.0, Prompt(box=BOX)),), "", "test", "mllm")
    track = MemoryTrack(seg, g, image, memory_frames=3, min_score=0.5)
    try:
        r = track.step(image)
        assert r.valid and r.note == "tracked" and track.confidence > 0.99 and r.mask.any()
        set_presence(seg.model, -6.0)  # the target leaves the scene
        r = track.step(image)
        assert not r.valid and r.note == "target lost" and track.confidence < 0.01 and not r.mask.any()
    finally:
        set_presence(seg.model, 6.0)
        track.close()


def test_mask_prompt_conditions_the_stream(sam3_dir):
    seg = _segmenter(sam3_dir)
    image = _image(3)
    logits = np.where(np.arange(24 * 32).reshape(24, 32) % 32 < 16, 8.0, -8.0).astype(np.float32)  # left half
    stream = seg.start_stream(image, [Prompt(mask_logits=logits)], memory_frames=2)
    try:
        first = stream.last[0].mask
        assert first.shape == (H, W) and 0.05 < first.mean() < 0.95
        assert stream.step(image)[0].mask.shape == (H, W)
    finally:
        stream.close()


def test_errors_are_one_line_naming_the_setting_and_the_fix(tmp_path, sam3_image_dir):
    with pytest.raises(ConfigError, match="segmenter.kind sam3 needs segmenter.model"):
        _segmenter(None)
    with pytest.raises(ConfigError, match="has no sam3_encoder.onnx: .*segmenter.backend=torch"):
        _segmenter(sam3_image_dir, "segmenter.backend=onnxruntime")
    with pytest.raises(ConfigError, match="segmenter.precision=int8: .*sam3 on torch runs fp32 only"):
        _segmenter(sam3_image_dir, "segmenter.precision=int8")
    with pytest.raises(ModelCacheError, match=r"SAM 3 .*missing: no such file or folder; .*nothing downloads"):
        _segmenter(tmp_path / "missing")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text(json.dumps({"model_type": "sam3_tracker_video"}))
    (corrupt / "model.safetensors").write_bytes(b"\0" * 100)
    with pytest.raises(ModelCacheError, match="SAM 3 .*cannot be loaded") as err:
        _segmenter(corrupt)
    assert "\n" not in str(err.value)
    sam2 = tiny_sam2(tmp_path / "sam2", video=False)  # a real checkpoint of another kind
    with pytest.raises(ModelCacheError, match="'sam2' checkpoint, not SAM 3's tracker") as err:
        _segmenter(sam2)
    assert "\n" not in str(err.value)
    seg = _segmenter(sam3_image_dir)
    with pytest.raises(ValueError, match="image-only SAM 3 checkpoint"):
        seg.start_stream(_image(), [Prompt(box=BOX)], 4)


def test_tiny_sam3_detector_runs_a_text_concept_end_to_end(tmp_path):
    """The next step's model: SAM 3's concept detector (text -> every matching instance), built offline."""
    import torch
    from transformers import Sam3Model, Sam3Processor

    from tiny_models import tiny_sam3

    model_dir = tiny_sam3(tmp_path / "tiny-sam3-detector", num_queries=8)
    proc = Sam3Processor.from_pretrained(model_dir, local_files_only=True)
    model = Sam3Model.from_pretrained(model_dir, local_files_only=True).eval()
    image = _image(4)
    inputs = proc(images=image, text="yellow bus", return_tensors="pt")
    tok = proc.tokenizer
    assert inputs["input_ids"].shape == (1, 32) and int(inputs["attention_mask"].sum()) == 4  # padded to 32
    assert tok.convert_ids_to_tokens(inputs["input_ids"][0, :4].tolist()) == [
        "<|startoftext|>", "yellow</w>", "bus</w>", "<|endoftext|>"]
    assert inputs["pixel_values"].shape == (1, 3, 112, 112)
    with torch.no_grad():
        out = model(**inputs)
        other = model(**proc(images=image, text="person", return_tensors="pt"))
    assert out.pred_masks.shape == (1, 8, 32, 32) and out.pred_boxes.shape == (1, 8, 4)
    assert out.pred_logits.shape == (1, 8) and out.presence_logits.shape == (1, 1)
    assert not torch.allclose(out.pred_logits, other.pred_logits)  # the concept reaches the scores
    res = proc.post_process_instance_segmentation(out, threshold=0.0, mask_threshold=0.5,
                                                  target_sizes=[image.shape[:2]])[0]
    # score = P(query matches) x P(concept present in the image)
    expected = out.pred_logits[0].sigmoid() * out.presence_logits[0].sigmoid()
    assert torch.allclose(res["scores"], expected)
    assert res["masks"].shape == (8, H, W) and set(res["masks"].unique().tolist()) <= {0, 1}
    boxes = res["boxes"]
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert torch.allclose(boxes, out.pred_boxes[0] * torch.tensor([W, H, W, H], dtype=torch.float32))
    strict = proc.post_process_instance_segmentation(out, threshold=float(expected.max()), target_sizes=[(H, W)])
    assert len(strict[0]["scores"]) == 0  # the threshold is strict (>)
