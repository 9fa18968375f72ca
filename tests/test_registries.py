"""The registries are the one place a segmenter backend, a pipeline, a VLM grounder or an export format is added:
the choice lists, the CLI, the parameter schema and the file contracts all follow from them."""
from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from reasonseg.cli.main import build_parser
from reasonseg.cli.prepare_models import STEPS
from reasonseg.core.errors import ConfigError
from reasonseg.grounding.vlm import registry as vlm_registry
from reasonseg.pipelines import registry as pipelines_registry
from reasonseg.segmenters import registry as segmenters_registry
from reasonseg.segmenters.lite_sam import graphs as lite_sam_graphs
from reasonseg.segmenters.sam2 import graphs as sam2_graphs
from reasonseg.segmenters.sam3 import graphs as sam3_graphs
from reasonseg.core.settings import Settings, is_section
from reasonseg.settings.loading import with_overrides
from reasonseg.settings.schema import parameter_schema
from reasonseg.settings.validation import REGISTRY_CHOICES
from reasonseg_export.formats import FORMATS

CONTRACTS = {"lite_sam": lite_sam_graphs, "sam2": sam2_graphs, "sam3": sam3_graphs}


def _subparser(name: str):
    actions = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse keeps them there
    return actions[name]


def _choices(parser, dest: str) -> list[str]:
    return list(next(a for a in parser._actions if a.dest == dest).choices)  # noqa: SLF001


def test_choice_lists_are_the_registry_keys() -> None:
    specs = segmenters_registry.SPECS
    assert REGISTRY_CHOICES["segmenter.kind"] == tuple(dict.fromkeys(s.kind for s in specs))
    assert set(REGISTRY_CHOICES["segmenter.backend"]) == {"auto", *(s.backend for s in specs)}
    assert set(REGISTRY_CHOICES["segmenter.precision"]) == {"auto", *(p for s in specs for p in s.precisions)}
    assert REGISTRY_CHOICES["pipeline"] == ("auto", *pipelines_registry.BUILDERS)
    assert REGISTRY_CHOICES["mllm.backend"] == tuple(vlm_registry.BACKENDS)
    assert set(pipelines_registry.AUTO_ORDER) <= set(pipelines_registry.BUILDERS) >= set(pipelines_registry.CONFIGURED)
    assert set(segmenters_registry.AUTO) == set(segmenters_registry.KINDS)  # each kind says what `auto` runs


def test_every_registry_backed_setting_has_its_registry() -> None:
    # a field marked registry=True takes its choices from REGISTRY_CHOICES; a row there names a marked field
    marked = {f"{sec.name}.{f.name}" if is_section(sec) else sec.name
              for sec in dataclasses.fields(Settings)
              for f in (dataclasses.fields(sec.default_factory) if is_section(sec) else (sec,))
              if f.metadata.get("registry")}
    assert marked == set(REGISTRY_CHOICES)


def test_schema_enums_are_the_registry_keys() -> None:
    node = parameter_schema()["definitions"]["reasonseg_node"]["properties"]
    seg = node["segmenter"]["properties"]
    assert seg["kind"]["enum"] == list(segmenters_registry.KINDS)
    assert seg["backend"]["enum"] == list(segmenters_registry.BACKENDS)
    assert seg["precision"]["enum"] == list(segmenters_registry.PRECISIONS)
    assert node["pipeline"]["enum"] == ["auto", *pipelines_registry.BUILDERS]
    assert node["mllm"]["properties"]["backend"]["enum"] == list(vlm_registry.BACKENDS)


def test_cli_choices_are_the_registry_keys() -> None:
    assert _choices(_subparser("segment"), "pipeline") == ["auto", *pipelines_registry.BUILDERS]
    assert _choices(_subparser("export"), "format") == list(FORMATS)
    # --set takes any setting; a value outside a registry is refused naming the registry's keys
    for name, keys in (("segmenter.backend", segmenters_registry.BACKENDS), ("pipeline", pipelines_registry.PIPELINES),
                       ("mllm.backend", tuple(vlm_registry.BACKENDS))):
        with pytest.raises(ConfigError, match=", ".join(keys)):
            with_overrides(Settings(), [f"{name}=nonesuch"])


def test_every_segmenter_file_is_named_by_its_graph_contract() -> None:
    for spec in segmenters_registry.SPECS:
        contract = CONTRACTS[spec.kind]
        assert set(spec.files) <= set(contract.GRAPH_FILES), (spec.kind, spec.backend)
    # each precision a LiteSAM row runs is a file it loads (tensorrt: engines from the fp32 / int8 graphs)
    for spec in segmenters_registry.SPECS:
        if spec.kind == "lite_sam" and spec.backend in ("onnxruntime", "openvino"):
            assert {f"lite_sam/{lite_sam_graphs.encoder_file(p, spec.backend)}" for p in spec.precisions} \
                <= set(spec.files)


def test_every_export_format_writes_a_runtime_contract_or_says_it_is_offline_only() -> None:
    for fmt in FORMATS.values():
        assert fmt.files, fmt.name
        assert bool(fmt.read_by) != bool(fmt.offline_only), f"{fmt.name}: read_by or offline_only, one of them"
        if fmt.read_by:
            contract = importlib.import_module(fmt.read_by).GRAPH_FILES
            for pattern in fmt.files:  # every file it writes is one a runner loads
                assert any(fnmatch(name, pattern) or name == pattern for name in contract), (fmt.name, pattern)
    # and every file a segmenter row loads comes from an export format or a set-up step
    made = [p for f in FORMATS.values() for p in f.files] + [name for _, names, _ in STEPS for name in names]
    for spec in segmenters_registry.SPECS:
        for name in spec.files:
            assert any(fnmatch(name, p) for p in made), (spec.kind, spec.backend, name)


def test_the_default_files_are_in_the_set_up_cache(cache_dir: Path) -> None:
    spec = segmenters_registry.spec_for("lite_sam", "onnxruntime")
    for name in ("lite_sam/encoder.onnx", "lite_sam/decoder_multimask.onnx", "lite_sam.safetensors"):
        assert name in spec.files or name in segmenters_registry.spec_for("lite_sam", "torch").files
        assert (cache_dir / name).is_file(), name


_BUILD_AND_LIST_MODULES = """
import json, sys
from reasonseg.pipelines.registry import build_pipeline
from reasonseg.segmenters.registry import build_segmenter
from reasonseg.core.settings import SegmenterSettings, Settings

settings = Settings()
build_pipeline(settings)  # the embedded default, as the node builds it
for backend, model in (("torch", sys.argv[1]), ("onnxruntime", sys.argv[2])):
    build_segmenter(SegmenterSettings(kind="sam2", model=model, backend=backend, device="cpu"), settings.cache_path)
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_default_pipeline_and_sam2_loads_no_export_module(tmp_path: Path, cache_dir: Path) -> None:
    from reasonseg_export.sam2 import export_sam2
    from tiny_models import tiny_sam2

    checkpoint = tiny_sam2(tmp_path / "tiny-sam2", video=False)
    written = export_sam2(checkpoint, tmp_path / "onnx")
    assert {p.name for p in written} <= set(sam2_graphs.GRAPH_FILES)
    proc = subprocess.run([sys.executable, "-c", _BUILD_AND_LIST_MODULES, str(checkpoint), str(tmp_path / "onnx")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "reasonseg.segmenters.sam2.onnx_runner" in modules and "reasonseg.pipelines.refine" in modules
    assert not [m for m in modules if m.split(".")[0] == "reasonseg_export" or m.startswith("reasonseg.cli")]
