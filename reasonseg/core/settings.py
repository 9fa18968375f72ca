"""Settings: one typed schema for YAML files, ROS parameters and the CLI, read by every layer.

Each field carries its default, description and bounds. The settings layer above (`reasonseg/settings/`)
validates a mapping into a `Settings` (`validation.settings_from_flat`: "segmenter.num_points": 20, as ROS hands
parameters over), reads YAML files and writes the parameter schema; a field marked `registry=True` takes its
choices from a registry's keys there (one registry row adds a choice everywhere), so this module, at the bottom,
imports no registry.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from reasonseg.core.model_cache import resolve_cache_dir


def _f(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple[str, ...] | None = None, registry: bool = False,
       check: Callable[[Any], str | None] | None = None, schema: Mapping[str, Any] | None = None) -> Any:
    """A setting: default, description and bounds. `check` is a rule beyond them; `schema` says the same rule
    in JSON Schema terms for the parameter schema file (reasonseg/settings/schema.py)."""
    return field(default=default, metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices, "registry": registry,
                                            "check": check, "schema": dict(schema or {})})


# Choice lists that are properties of one model; those of a registry (`registry=True`: segmenter kind, backend,
# precision, pipeline, mllm.backend) are its keys, attached by reasonseg/settings/validation.py.
MASK_CHOICES = ("single", "largest_in_box")  # LiteSAM's mask tokens: see reasonseg/segmenters/lite_sam/runners.py
MLLM_DTYPES = ("auto", "float32", "bfloat16", "float16")
LENS_BACKENDS = ("torch", "onnx")
MLLM_BOX_FORMATS = ("auto", "absolute", "relative_1000")  # see reasonseg/grounding/vlm/answer.py
DETECTOR_KINDS = ("centernet", "sam3")  # refine's candidates: COCO-80 boxes, or SAM 3 instances of the phrase
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def _device(doc: str = "auto | cpu | cuda | cuda:N") -> Any:
    return _f("auto", doc, check=lambda v: None if _DEVICE.fullmatch(v) else "must be auto, cpu, cuda or cuda:N",
              schema={"pattern": f"^({_DEVICE.pattern})$"})

def _userinfo_end(url: str) -> int:
    """Index just past the '@' that ends a URL's userinfo (`user:password@`), 0 when it has none."""
    start = url.find("://") + 3 if "://" in url else 0
    end = min((i for i in (url.find(c, start) for c in "/?#") if i >= 0), default=len(url))
    return url.rfind("@", start, end) + 1


def no_credentials(url: str) -> str | None:
    # ROS parameters are readable by anyone on the DDS domain (get_parameters, /parameter_events)
    if _userinfo_end(url):
        return ("credentials (user:password@) are refused in a URL parameter, where anyone on the ROS domain can "
                "read them: give the key in $OPENAI_API_KEY (secrets come from the environment only)")
    return None


def redacted(value: Any) -> Any:
    """`value` for an error message: a URL's userinfo as `***@`."""
    at = _userinfo_end(value) if isinstance(value, str) else 0
    return value[: value.find("://") + 3 if "://" in value else 0] + "***@" + value[at:] if at else value


def _url(doc: str) -> Any:
    return _f("", doc, check=no_credentials, schema={"not": {"pattern": "^([^:/?#]*://)?[^/?#]*@"}})

IMAGE_TRANSPORTS = ("raw", "compressed")
_CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_cameras(names: tuple[str, ...]) -> str | None:
    if names == ("",):
        return None
    if not names:
        return "needs at least one camera ([\"\"] = the node's own topics)"
    bad = [n for n in names if not _CAMERA_NAME.fullmatch(n)]
    if bad:
        return f"camera names must be ROS name tokens (letter, then letters, digits, _): {bad}"
    if len(set(names)) != len(names):
        return "camera names must be unique"
    return None


@dataclass(frozen=True)
class DetectorSettings:
    kind: str = _f("centernet", "refine's candidates: centernet (COCO-80 boxes, the embedded default) | sam3 (every "
                                "instance of the instruction's noun phrase as a text concept, sam3.model)",
                   choices=DETECTOR_KINDS)
    score_floor: float = _f(0.12, "minimum detector score for a candidate", lo=0.0, hi=1.0)
    max_detections: int = _f(50, "detections kept per frame", lo=1, hi=300)
    zoom_out: float = _f(2.0, "second detector pass on the image shrunk by this factor, for objects that fill "
                              "the frame (1 = off)", lo=1.0, hi=4.0)
    zoom_in: float = _f(2.0, "refine: a second look, enlarged up to this factor, at the region where the "
                             "instruction's class was found only small or weak, to confirm or drop those boxes "
                             "(1 = off)", lo=1.0, hi=4.0)
    presence_floors: str = _f("shipped", "refine: per-class score a box needs for its class to count as present: "
                                         "shipped (fitted on the evaluation's tune photos) | none | a JSON path")
    small_side: float = _f(0.06, "refine: a detection whose larger side is under this share of the frame's larger "
                                 "side is small (zoom_in looks again)", lo=0.0, hi=0.5)


@dataclass(frozen=True)
class SegmenterSettings:
    kind: str = _f("lite_sam", "segmenter model family", registry=True)
    model: str = _f("", "sam2 / sam3: HF id (from the local cache) or local dir, e.g. facebook/sam2.1-hiera-tiny, "
                        "facebook/sam3 (lite_sam: '' = the embedded default)")
    device: str = _device()
    # SAM2 / SAM 3 read 6 past masks and 15 past object pointers; older frames are dropped.
    memory_frames: int = _f(16, "sam2 / sam3 tracker: past frames kept in the memory bank", lo=1, hi=256)
    # onnxruntime runs the LiteSAM encoder ~2x faster than torch on CPU, OpenVINO's bf16 ~1.3x faster again where
    # the CPU has native bf16, and its NNCF int8 ~1.35x faster than that; torch is the reference.
    backend: str = _f("auto", "segmenter backend; auto = openvino where it would run an int8 or bf16 encoder the "
                              "set-up judged for this CPU (CPUs with native bf16), else onnxruntime (sam2: "
                              "onnxruntime for an exported folder, else torch)", registry=True)
    # The int8 encoder is made by the set-up step (`reasonseg export lite-sam --precision int8`) and judged
    # there: its manifest records the mask IoU vs fp32 on the sample photos and the CPU that judged it
    # (backends/cpu_int8.py: auto does not carry a judgement over to a CPU whose int8 kernels saturate).
    precision: str = _f("auto", "lite_sam on onnxruntime: image encoder precision; auto = int8 when its manifest "
                                "shows mean mask IoU >= 0.95 vs fp32, else fp32 (lite_sam on openvino: auto = int8, "
                                "then bf16, by the same rule as judged for this CPU; on tensorrt: auto = fp16; other "
                                "kinds and backends: fp32 only)", registry=True)
    # Paper §3.4 prompts SAM with the box plus the n_p = 20 top-probability points. LiteMedSAM was trained on
    # boxes only and points shrink its masks (measured: truck box cover 0.46 -> 0.17 with 20 points), so the
    # embedded default is box-only; set 20 for SAM/SAM2 proper.
    num_points: int = _f(0, "top-n detector heatmap points added as positive prompts (paper: 20)", lo=0, hi=64)
    threads: int = _f(0, "CPU threads for the segmenter (0 = library default)", lo=0, hi=256)
    subtract_occluders: bool = _f(True, "cut confident other-class objects inside the target box out of its mask")
    mask_choice: str = _f("largest_in_box", "lite_sam: single (mask token 0) | largest_in_box (the largest of the "
                                            "four masks inside the box prompt)", choices=MASK_CHOICES)
    # Measured on the unseen-photo evaluation set: LiteMedSAM masks ~20 % of a person's box, the selfie model
    # the whole person (bench/eval_unseen.py).
    person_model: bool = _f(True, "refine: mask people with the selfie person segmenter instead of the box prompt")


@dataclass(frozen=True)
class LlmSettings:
    model: str = _f("gpt-4o", "chat model name on the OpenAI-compatible endpoint")
    base_url: str = _url("endpoint ('' = $OPENAI_BASE_URL; neither: no LLM, the local resolver); "
                         "$OPENAI_API_KEY goes only to its own origin (README)")
    timeout_s: float = _f(8.0, "per-request timeout; slower answers fall back to the local resolver", lo=0.1, hi=120.0)
    max_tokens: int = _f(256, "answer token budget", lo=16, hi=4096)


@dataclass(frozen=True)
class MllmSettings:
    backend: str = _f("transformers", "transformers: Qwen3-VL / Qwen2.5-VL / Qwen2-VL in this process; onnxruntime-genai: "
                                      "an ORT GenAI package (reasonseg export qwen-vl) on CPU or CUDA; openai: any "
                                      "OpenAI-compatible chat endpoint that takes images (vLLM, Ollama, GPT-4o)",
                      registry=True)
    model: str = _f("", "HF id (from the local cache) or local dir; the package dir for onnxruntime-genai; the "
                        "served model name for openai ('' = the mllm pipeline is not configured)")
    base_url: str = _url("endpoint ('' = $OPENAI_BASE_URL); $OPENAI_API_KEY goes only to its own origin (README)")
    box_format: str = _f("auto", "how the model's boxes read: absolute (pixels of the image sent, Qwen2.5-VL), "
                                 "relative_1000 (0..1000 of the image, Qwen3-VL); auto: from the checkpoint's "
                                 "config.json in process, from mllm.model's name when served",
                         choices=MLLM_BOX_FORMATS)
    chain_of_thought: bool = _f(False, "ask for <think>...</think><answer>...</answer>")
    timeout_s: float = _f(20.0, "deadline for one grounding answer", lo=0.1, hi=600.0)
    max_new_tokens: int = _f(512, "answer token budget", lo=16, hi=8192)
    device: str = _device("transformers / onnxruntime-genai backends: auto | cpu | cuda | cuda:N")
    dtype: str = _f("auto", "transformers backend weights dtype (auto: bfloat16 on CUDA, float32 on CPU)",
                    choices=MLLM_DTYPES)
    # Qwen's smart_resize: the frame is resized to multiples of the family's factor (28 px Qwen2.5-VL, 32 px
    # Qwen3-VL) within these pixel counts before it is sent, and the answer is mapped back to the frame.
    min_pixels: int = _f(56 * 56, "smallest image sent to the model (pixels)", lo=28 * 28, hi=1 << 26)
    max_pixels: int = _f(1280 * 28 * 28, "largest image sent to the model (pixels)", lo=28 * 28, hi=1 << 26)
    max_instances: int = _f(8, "answers naming more objects than this are rejected", lo=1, hi=100)


@dataclass(frozen=True)
class Sam3Settings:
    model: str = _f("", "SAM 3 concept model (Sam3Model): HF id from the local cache (facebook/sam3) or dir; used by "
                        "detector.kind sam3 and the agent pipeline ('' = not configured)")
    device: str = _device()
    score_threshold: float = _f(0.5, "instances below this score are dropped", lo=0.0, hi=1.0)
    presence_threshold: float = _f(0.5, "below this presence probability the concept is not in the image", lo=0.0,
                                   hi=1.0)
    mask_threshold: float = _f(0.5, "mask probability that counts as foreground", lo=0.01, hi=0.99)
    max_instances: int = _f(20, "instances kept per concept, best first", lo=1, hi=200)


@dataclass(frozen=True)
class AgentSettings:
    max_rounds: int = _f(3, "MLLM pick / refine rounds per grounding", lo=1, hi=8)
    max_phrases: int = _f(3, "noun phrases the MLLM may propose per round", lo=1, hi=8)
    max_candidates: int = _f(12, "numbered candidates shown to the MLLM (best scores first)", lo=1, hi=40)
    timeout_s: float = _f(60.0, "deadline for one whole grounding (every round); past it auto falls back",
                          lo=0.1, hi=600.0)


@dataclass(frozen=True)
class LensSettings:
    model: str = _f("", "LENS checkpoint in the release's layout: HF id (local cache) or dir, e.g. OuyBin/LENS; "
                        "with backend onnx the folder `reasonseg export lens` writes ('' = the lens pipeline is not "
                        "configured)")
    backend: str = _f("torch", "torch: the checkpoint in PyTorch; onnx: its exported graphs (ORT GenAI answer, "
                               "ONNX second pass, SAM2 on onnxruntime), no PyTorch on the frame path",
                      choices=LENS_BACKENDS)
    chain_of_thought: bool = _f(False, "the CoT checkpoints' prompt (OuyBin/LENS_ReasonSeg_CoT): "
                                       "<think>...</think><answer>...</answer>")
    num_queries: int = _f(0, "context queries M when the checkpoint's config has no num_of_query (0 = the "
                             "release's 64); a checkpoint's own value always wins", lo=0, hi=1024)
    max_new_tokens: int = _f(256, "answer token budget (the release's demo: 256)", lo=1, hi=8192)
    timeout_s: float = _f(30.0, "deadline for one grounding; past it auto falls back to the next pipeline",
                          lo=0.1, hi=600.0)
    device: str = _device()
    dtype: str = _f("auto", "MLLM + connector dtype (auto: bfloat16 on CUDA, float32 on CPU); SAM2 stays float32",
                    choices=MLLM_DTYPES)


@dataclass(frozen=True)
class CoraSettings:
    model: str = _f("", "CORA checkpoint written by CoraModel.save_pretrained / training/: HF id (local cache) or "
                        "dir ('' = the cora pipeline is not configured)")
    max_new_tokens: int = _f(32, "answer token budget (the answer is short: \"Sure, it is <SEG>.\")", lo=1, hi=8192)
    timeout_s: float = _f(30.0, "deadline for one grounding", lo=0.1, hi=600.0)
    device: str = _device()
    dtype: str = _f("auto", "MLLM dtype (auto: bfloat16 on CUDA, float32 on CPU); SAM2 stays float32",
                    choices=MLLM_DTYPES)


@dataclass(frozen=True)
class L2LSettings:
    model: str = _f("", "L2L segmentor checkpoint dir written by training/ (L2LSegmentor.save_pretrained); "
                        "'' = the l2l pipeline is not configured")
    passes: int = _f(2, "forward passes per frame: pass 1 with an uninformative prior, each later one with the "
                        "previous pass's probabilities as SESM's prior (no MLLM onboard)", lo=1, hi=4)
    threshold: float = _f(0.5, "foreground probability that counts as mask", lo=0.01, hi=0.99)
    min_area: float = _f(0.001, "smallest mask, as a share of the frame, that counts as found", lo=0.0, hi=1.0)
    device: str = _device()


@dataclass(frozen=True)
class ResolverSettings:
    min_similarity: float = _f(0.40, "min MiniLM cosine similarity noun phrase -> class", lo=0.0, hi=1.0)
    sibling_similarity: float = _f(0.55, "label-label similarity above which a detection of a sibling class "
                                         "can stand for the target (horse scored as sheep)", lo=0.0, hi=1.0)
    # WordNet says whether a noun is a label, a kind of one (eagle -> bird), or something the label set cannot
    # name (lemon, butterfly): that is "not found (nearest: orange)" unless near classes are accepted.
    accept_near_classes: bool = _f(False, "take the most similar label for a noun outside the label set")


@dataclass(frozen=True)
class RuntimeSettings:
    reground_period_s: float = _f(10.0, "re-run grounding this often (0 = only on change / lost track)", lo=0.0, hi=3600.0)
    lost_frames_before_reground: int = _f(3, "frames without the target before grounding again", lo=1, hi=1000)
    min_track_confidence: float = _f(0.5, "a tracked target below this presence confidence counts as lost",
                                     lo=0.0, hi=1.0)
    track_min_iou: float = _f(0.3, "IoU to keep following the grounded instance between frames", lo=0.0, hi=1.0)
    max_image_pixels: int = _f(4096 * 4096, "larger frames are dropped with an error", lo=1, hi=1 << 27)
    # The detector letterboxes to 512 px and LiteSAM to 256 px: at 10:1 the short side is ~25 px there.
    max_aspect_ratio: float = _f(10.0, "frames longer than this many times their short side are dropped",
                                 lo=1.0, hi=100.0)
    max_instruction_chars: int = _f(500, "longer instructions are rejected", lo=1, hi=100_000)
    publish_overlay: bool = _f(True, "publish the bgr8 overlay image")
    # Key frames + optical flow (reasonseg/runtime/propagation.py): the pipeline segments at most every Nth frame
    # and the frames between carry the last mask forward; a flow that stops agreeing with itself ends that sooner.
    keyframe_period: int = _f(10, "segment every Nth frame at most; the frames between carry the last mask forward "
                                 "by optical flow (1 = segment every frame)", lo=1, hi=1000)
    flow_min_consistency: float = _f(0.7, "segment afresh when less than this share of the carried mask passes the "
                                          "forward-backward flow check", lo=0.0, hi=1.0)
    flow_max_area_change: float = _f(0.35, "segment afresh when the carried mask's area has changed by more than this "
                                           "share since the key frame", lo=0.0, hi=10.0)
    flow_max_side: int = _f(384, "optical flow runs on the frame shrunk to this longest side (pixels)", lo=32, hi=4096)


@dataclass(frozen=True)
class DiagnosticsSettings:
    max_latency_ms: float = _f(3000.0, "WARN when the median frame stamp -> mask latency is above this",
                               lo=1.0, hi=600_000.0)
    # The frame gate drops stale frames by design (a 1 Hz model on a 30 Hz camera drops ~97 %).
    max_drop_share: float = _f(0.99, "WARN when more than this share of incoming frames is dropped "
                                     "(stale or malformed) since the last report", lo=0.0, hi=1.0)
    error_count: int = _f(3, "ERROR after this many pipeline errors in a row", lo=1, hi=1_000_000)
    no_frame_s: float = _f(5.0, "ERROR when an active camera has sent no frame for this long", lo=0.1,
                           hi=86_400.0)


@dataclass(frozen=True)
class Settings:
    pipeline: str = _f("auto", "grounding pipeline", registry=True)
    cache_dir: str = _f("", "model cache (empty = $REASONSEG_CACHE or ~/.cache/reasonseg)")
    # -- node only (the CLI reads and ignores these) --
    autostart: bool = _f(True, "configure and activate at start; false waits for a lifecycle manager")
    cameras: tuple[str, ...] = _f(("",), "camera names; each gets <name>/image, <name>/mask, ... ([''] = the "
                                         "node's own topics)", check=_check_cameras,
                                  schema={"anyOf": [{"const": [""]}, {
                                      "minItems": 1, "uniqueItems": True,
                                      "items": {"pattern": f"^{_CAMERA_NAME.pattern}$"}}]})
    shared_instruction: bool = _f(False, "one `instruction` topic for every camera instead of <name>/instruction")
    image_transport: str = _f("raw", "raw: sensor_msgs/Image on <image>; compressed: CompressedImage (JPEG/PNG) on "
                                     "<image>/compressed", choices=IMAGE_TRANSPORTS)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    mllm: MllmSettings = field(default_factory=MllmSettings)
    sam3: Sam3Settings = field(default_factory=Sam3Settings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    lens: LensSettings = field(default_factory=LensSettings)
    cora: CoraSettings = field(default_factory=CoraSettings)
    l2l: L2LSettings = field(default_factory=L2LSettings)
    resolver: ResolverSettings = field(default_factory=ResolverSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    diagnostics: DiagnosticsSettings = field(default_factory=DiagnosticsSettings)

    @property
    def cache_path(self) -> Path:
        return resolve_cache_dir(self.cache_dir)

    def flat(self) -> dict[str, Any]:
        """Dotted-name view, e.g. {"segmenter.num_points": 20}: ROS parameter names (lists, not tuples)."""
        out: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                out.update({f"{name}.{k}": v for k, v in value.items()})
            else:
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


def field_docs() -> dict[str, str]:
    """Dotted name -> description, for ROS parameter descriptors and --help."""
    docs: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        if is_section(f):
            docs.update({f"{f.name}.{sub.name}": sub.metadata.get("doc", "")
                         for sub in dataclasses.fields(f.default_factory)})
        else:
            docs[f.name] = f.metadata.get("doc", "")
    return docs


def is_section(f: dataclasses.Field) -> bool:
    """A field that holds a group of settings (`segmenter`, `runtime`, ...), not one value."""
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


def brief(value: Any, limit: int = 80) -> str:
    """repr(value) for an error line, cut to about `limit` characters."""
    if isinstance(value, int) and value.bit_length() > 200:  # repr of a long one is slow, past 4300 digits refused
        return f"<an integer of about {round(value.bit_length() * math.log10(2))} digits>"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} characters)"


