"""SAM2 on each backend it runs on: a checkpoint on torch, the folder `reasonseg export sam2` wrote on onnxruntime;
one builder per `segmenter.backend` (rows of `segmenters/registry.py`) and what `auto` picks. `SamBuilders` holds
them for any SAM2-style family (SAM 3's tracker uses it too: `sam3/build.py`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reasonseg.core.errors import ConfigError
from reasonseg.core.model_loading import load_hf_model, load_model
from reasonseg.core.prompt import Segmenter
from reasonseg.core.settings import SegmenterSettings
from reasonseg.segmenters.sam2.graphs import ENCODER


@dataclass(frozen=True)
class SamBuilders:
    kind: str                             # segmenter.kind, and the `reasonseg export` format
    label: str                            # in logs and errors
    encoder: str                          # the exported encoder's file name: its presence marks an export folder
    checkpoints: str                      # what segmenter.model names on torch, for the error that asks for it
    torch_runner: Callable[[], type]      # lazy: torch is imported only when a checkpoint is built
    onnx_runner: Callable[[], type]

    def build_torch(self, seg: SegmenterSettings, cache: Path) -> Segmenter:
        if not seg.model:
            raise ConfigError(f"segmenter.kind {self.kind} needs segmenter.model ({self.checkpoints})")
        runner = self.torch_runner()
        return load_hf_model(f"{self.label} {seg.model}", seg.model,
                             lambda: runner(seg.model, device=seg.device, num_threads=seg.threads or None))

    def build_onnxruntime(self, seg: SegmenterSettings, cache: Path) -> Segmenter:
        if not self._exported(seg):
            raise ConfigError(f"segmenter.model={seg.model!r} has no {self.encoder}: on onnxruntime it must be the "
                              f"folder `reasonseg export {self.kind} --checkpoint CKPT --out DIR` wrote (a checkpoint "
                              "runs on segmenter.backend=torch)")
        runner = self.onnx_runner()
        return load_model(f"{self.label} ONNX {seg.model}",
                          lambda: runner(seg.model, device=seg.device, num_threads=seg.threads or None),
                          f"export it with `reasonseg export {self.kind} --checkpoint CKPT --out DIR`")

    def auto_backend(self, seg: SegmenterSettings, cache: Path) -> tuple[str, str]:
        """onnxruntime for a folder the exporter wrote, else torch (a checkpoint)."""
        return ("onnxruntime", f"{self.encoder} in segmenter.model") if self._exported(seg) else ("torch",
                                                                                                 "a checkpoint")

    def _exported(self, seg: SegmenterSettings) -> bool:
        return bool(seg.model) and (Path(seg.model) / self.encoder).is_file()


def _torch_runner() -> type:
    from reasonseg.segmenters.sam2.torch_runner import Sam2Segmenter

    return Sam2Segmenter


def _onnx_runner() -> type:
    from reasonseg.segmenters.sam2.onnx_runner import OnnxSam2Segmenter

    return OnnxSam2Segmenter


SAM2 = SamBuilders("sam2", "SAM2", ENCODER, "HF id or local dir, e.g. facebook/sam2.1-hiera-tiny", _torch_runner,
                   _onnx_runner)
build_torch, build_onnxruntime, auto_backend = SAM2.build_torch, SAM2.build_onnxruntime, SAM2.auto_backend
