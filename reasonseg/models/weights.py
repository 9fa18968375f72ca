"""A checkpoint's weight files, judged before anything is built from its config.

A model directory is a config (user-editable JSON) and safetensors weights. The config decides how much a
model allocates, so a `config.json` saying `num_hidden_layers: 1000000` or `hidden_size: 1000000000` used
to allocate until the OOM killer came (issue 29). Here the config is compared with what the weights ship,
read from the safetensors headers (names, dtypes, shapes; no tensor is read):

1. `check_counts`: a layer / block count in the config larger than the number of tensors in the weights
   (every layer has at least one) is refused before the config is even turned into a transformers config
   (Qwen's makes a list as long as `num_hidden_layers`);
2. `build_on_meta`: the model is then built on the meta device (no memory), stopping as soon as it has
   registered far more tensors than the weights hold; the caller compares its shapes with the headers'
   (`meta_state`) and names the first mismatched keys, still before allocating anything.

Weight files written by our `save_pretrained` carry a `<file>.sha256` (`model_cache.write_digest`), checked
by `read_safetensors` before the tensors are used.
"""
from __future__ import annotations

import json
import re
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reasonseg.core.errors import CheckpointError, one_line
from reasonseg.core.model_cache import drop_digest, verify_digest, write_digest
from reasonseg.core.output_files import atomic_target

if TYPE_CHECKING:
    from torch import nn

M = TypeVar("M")
HEADER_LIMIT = 100 * 1024 ** 2  # safetensors' own limit on the JSON header
# config fields that count layers / blocks (a list of them: per stage); `max_window_layers` is a threshold
COUNT_FIELD = re.compile(r"^(num_hidden_layers|num_layers|depths?|blocks_per_stage)$|_num_layers$|_depth$")
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
           "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def weight_files(root: Path) -> list[Path]:
    """``model.safetensors``, or the shards ``model.safetensors.index.json`` names; FileNotFoundError naming the
    absent ones."""
    index = root / "model.safetensors.index.json"
    files = [root / "model.safetensors"]
    if index.is_file():
        try:
            files = [root / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index}: not a safetensors index ({type(exc).__name__}: {exc})") from None
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise FileNotFoundError(f"{root}: weight file(s) missing: {', '.join(absent[:5])} (an interrupted download?)")
    return files


def read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from a safetensors file's header: 8 bytes little-endian length, then JSON."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(0)
            raw = f.read(8)
            n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
            if not 0 < n <= min(HEADER_LIMIT, size - 8):
                raise ValueError(f"header length {n} in a file of {size} bytes (truncated, or not safetensors)")
            header = json.loads(f.read(n))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        out = {}
        for name, info in tensors.items():
            shape = tuple(int(d) for d in info["shape"])
            if any(d < 0 for d in shape):
                raise ValueError(f"{name} has the shape {shape}")
            end = int(info["data_offsets"][1])
            if end > size - 8 - n:
                raise ValueError(f"{name} ends at byte {end} of a {size - 8 - n}-byte data section (truncated)")
            out[name] = (str(info["dtype"]), shape)
        return out
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def read_shapes(root: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor's (dtype, shape) over the checkpoint's weight files, from their headers only."""
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in weight_files(root):
        out.update(read_header(f))
    return out


def save_safetensors(state: Mapping[str, Any], path: Path, metadata: dict[str, str] | None = None, *,
                     digest: bool = True) -> Path:
    """One weight file (CPU, contiguous tensors), renamed into place complete, then its ``.sha256`` when `digest`
    (checked by `read_safetensors`; the model cache's files carry their manifest's digests instead)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if digest:
        drop_digest(path)  # a crash before the new record leaves no record, never a stale one
    with atomic_target(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
    if digest:
        write_digest(path)
    return path


def read_safetensors(root: Path) -> dict[str, Any]:
    """Every tensor of the checkpoint's weight files (safetensors: no code runs), each file checked against the
    sha256 recorded beside it when there is one."""
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for f in weight_files(root):
        verify_digest(f, f"use a complete copy of {root} (or write it again with training/)")
        state.update(load_file(str(f)))
    return state


def _counts(raw: Any, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(dotted field, count) for every layer / block count in a config (lists summed: blocks per stage)."""
    if not isinstance(raw, Mapping):
        return
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _counts(value, name + ".")
        elif COUNT_FIELD.search(str(key)):
            values = value if isinstance(value, list) else [value]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                yield name, sum(values)


def check_counts(raw: Mapping[str, Any], n_tensors: int, what: str, fix: str, source: str = "config.json") -> None:
    """A config whose layer / block counts cannot be these weights' (more layers than tensors) is refused in
    one line naming the field, before the config is turned into a model config."""
    for name, count in _counts(raw):
        if not 0 <= count <= n_tensors:  # NaN too
            raise CheckpointError(f"{what}: {source} says {name}={count:g}, but its weights hold {n_tensors} tensors "
                                  f"in all: this config does not describe these weights. Fix: {fix}")


def check_model_dir(path: str | Path, what: str) -> None:
    """For loaders that build through transformers' `from_pretrained` (the in-process MLLM, SAM2): a checkpoint
    whose config.json counts more layers than its weights hold tensors is refused in one line before transformers
    builds it (a million layers, even on the meta device, take minutes and gigabytes). Whatever else is wrong (no
    such dir, no weights, bad JSON) is left to the loader's own message."""
    try:
        root = resolve_checkpoint(path)
        raw = json.loads((root / "config.json").read_text())
        n = sum(len(read_header(f)) for f in weight_files(root))
    except (OSError, ValueError):  # CheckpointError too: an unreadable header is the loader's to report
        return
    check_counts(raw, n, f"{what} {path}", "use the config.json saved with these weights (or download the model again)")


def make_config(build: Callable[[], M], what: str, fix: str, source: str = "config.json") -> M:
    """A config object from checked JSON: transformers' own complaints (a float where an int goes, a list of the
    wrong length) as one line naming the file."""
    try:
        return build()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - pure data -> config: transformers / huggingface_hub raise their own types
        raise CheckpointError(f"{what}: {source} is not a config for this model ({type(exc).__name__}: "
                              f"{one_line(exc, 160)}). Fix: {fix}") from None


def count_summary(raw: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={count:g}" for name, count in _counts(raw))


def build_on_meta(build: Callable[[], M], n_tensors: int, what: str, fix: str, summary: str = "") -> M:
    """`build()` on the meta device (nothing allocated), stopped once it has registered far more tensors than the
    weights hold (a config that asks for more layers than they have: building those would only take time)."""
    import torch
    from torch.nn.modules import module as nn_module
    from transformers.initialization import no_init_weights

    limit = 2 * n_tensors + 256  # + buffers the files do not store, tied weights registered twice
    owner = threading.get_ident()
    seen = [0]

    def count(*_: Any) -> None:
        if threading.get_ident() == owner:
            seen[0] += 1
            if seen[0] > limit:
                raise _TooLarge

    hooks = [nn_module.register_module_parameter_registration_hook(count),
             nn_module.register_module_buffer_registration_hook(count)]
    try:
        with torch.device("meta"), no_init_weights():
            return build()
    except _TooLarge:
        raise CheckpointError(f"{what}: its config describes a model with more than {limit} tensors, its weights hold "
                              f"{n_tensors} ({summary or 'see the layer counts in config.json'}). Fix: {fix}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a model's __init__ raises on the config's values
        raise CheckpointError(f"{what}: its config does not build a model ({type(exc).__name__}: "
                              f"{one_line(exc, 160)}). Fix: {fix}") from None
    finally:
        for hook in hooks:
            hook.remove()


class _TooLarge(Exception):
    pass


def meta_state(shapes: Mapping[str, tuple[str, tuple[int, ...]]]) -> dict[str, Any]:
    """The weights as meta tensors of their dtype and shape: what key and shape checks need, at no memory."""
    import torch

    return {k: torch.empty(shape, dtype=getattr(torch, _DTYPES.get(dtype, "float32")), device="meta")
            for k, (dtype, shape) in shapes.items()}


@dataclass(frozen=True)
class LoadReport:
    """A strict key-by-key comparison of a file's tensors with a model's (`check_state`)."""

    missing: tuple[str, ...]      # in the model, not in the file
    unexpected: tuple[str, ...]   # in the file, not in the model
    mismatched: tuple[str, ...]   # "name: file shape vs model shape" (or not a tensor)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def explain(self, what: str, fix: str) -> str:
        parts = []
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {first_keys(self.mismatched, 3)}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {first_keys(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {first_keys(self.unexpected)}")
        return f"{what} does not fit its config: " + "; ".join(parts) + ". Fix: " + fix


def first_keys(keys: Iterable[str], n: int = 5) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def check_state(module: nn.Module, state: Mapping[str, Any], prefix: str = "",
                optional: Iterable[str] = ()) -> LoadReport:
    """Compare file tensors (module-relative names, real or `meta_state`'s) with a module's; `optional` keys may
    be absent (tied weights). A value that is not a tensor counts as a mismatch."""
    own = module.state_dict()
    skip = set(optional)
    unexpected = [prefix + k for k in state if k not in own]
    mismatched = [f"{prefix}{k}: a {type(v).__name__} in the file, not a tensor" if not hasattr(v, "shape") else
                  f"{prefix}{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
                  for k, v in state.items()
                  if k in own and (not hasattr(v, "shape") or tuple(v.shape) != tuple(own[k].shape))]
    missing = [prefix + k for k in own if k not in state and k not in skip]
    return LoadReport(tuple(missing), tuple(unexpected), tuple(mismatched))


def merge(*reports: LoadReport) -> LoadReport:
    return LoadReport(*(tuple(x for r in reports for x in getattr(r, f)) for f in ("missing", "unexpected",
                                                                                  "mismatched")))


__all__ = ["weight_files", "read_header", "read_shapes", "read_safetensors", "check_counts", "check_model_dir",
           "make_config", "count_summary", "build_on_meta", "meta_state", "LoadReport", "check_state", "merge"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A local dir, or an HF repo id already in the local cache (nothing downloads at run time)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"{p} has no config.json: not a checkpoint directory")
        return p
    if p.exists():
        raise FileNotFoundError(f"{p} is a file; the setting needs a checkpoint directory or an HF id")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(str(path), local_files_only=True))
    except (LocalEntryNotFoundError, ValueError) as exc:
        raise FileNotFoundError(f"{path}: no such directory, and not in the local HF cache ({exc.__class__.__name__}); "
                                f"download it once (hf download {path}) and point the setting at it") from None
