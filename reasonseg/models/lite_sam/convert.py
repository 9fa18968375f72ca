"""LiteSAM weights: the LiteMedSAM torch checkpoint -> safetensors, and safetensors save / load.

Every load is a strict key / shape comparison against the model the config builds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from reasonseg.core.errors import one_line
from reasonseg.models.lite_sam.configuration import LiteSamConfig
from reasonseg.models.lite_sam.modeling import LiteSam, build_lite_sam
from reasonseg.models.weights import check_state, save_safetensors


def _one_line(exc: BaseException) -> str:
    return one_line(exc, 300) or type(exc).__name__


def _check_state(model: nn.Module, state: Mapping[str, object], source: Path) -> dict[str, Tensor]:
    """Strict key / shape comparison (models/weights.py); raises a one-line ValueError."""
    report = check_state(model, state)
    if not report.clean:
        raise ValueError(report.explain(f"{source}: LiteSAM state dict",
                                        "use weights made for this config (reasonseg prepare-models --force)"))
    return dict(state)  # type: ignore[arg-type] - all tensors: check_state counts any other value as a mismatch


def _metadata(model: LiteSam, **extra: str) -> dict[str, str]:
    return {"format": "pt", "model": "lite_sam", "config": json.dumps(asdict(model.cfg)), **extra}


def save_lite_sam(model: LiteSam, out: Path) -> Path:
    """Write the model's state dict as safetensors (atomic replace)."""
    return save_safetensors(model.state_dict(), Path(out), _metadata(model), digest=False)


def convert_checkpoint(pth: Path, out: Path, cfg: LiteSamConfig = LiteSamConfig()) -> Path:
    """Torch checkpoint (e.g. lite_medsam.pth) -> safetensors, after a strict key/shape check."""
    pth = Path(pth)
    if not pth.is_file():
        raise FileNotFoundError(f"checkpoint not found: {pth}")
    try:
        obj = torch.load(pth, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip failure means a bad file
        raise ValueError(f"{pth}: cannot load torch checkpoint: {_one_line(exc)}") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"{pth}: checkpoint is a {type(obj).__name__}, expected a state dict")
    model = build_lite_sam(cfg)
    state = _check_state(model, obj, pth)
    model.load_state_dict(state, strict=True)  # also validates dtype conversions
    return save_safetensors(model.state_dict(), Path(out), _metadata(model, source=pth.name),
                            digest=False)


def load_lite_sam(weights: Path, cfg: LiteSamConfig = LiteSamConfig()) -> LiteSam:
    """safetensors -> LiteSam (eval mode, CPU).  FileNotFoundError if absent, ValueError if unreadable/mismatched."""
    from safetensors.torch import load_file

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"LiteSam weights not found: {weights}")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types for corrupt files
        raise ValueError(f"{weights}: cannot read safetensors: {_one_line(exc)}") from None
    model = build_lite_sam(cfg)
    model.load_state_dict(_check_state(model, state, weights), strict=True)
    return model.eval()
