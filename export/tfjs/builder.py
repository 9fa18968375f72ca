"""Emitting ONNX nodes for a TF graph while tracking each tensor's layout.

The model's public signature stays NHWC (TF's layout). Convolutions, pooling and resizing run channels-first
(NCHW) inside the graph; activations stay channels-first while they flow through element-wise ops, concat and
keep-dims reductions, and are transposed back only where an op needs TF's layout (reshape, gather,
outputs ...). Each transpose is emitted once per tensor and reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from reasonseg_export.tfjs.graph import TfNode

# NHWC <-> NCHW permutations and the axis map "TF axis -> channels-first axis".
_TO_CF = (0, 3, 1, 2)
_TO_TF = (0, 2, 3, 1)
TF_AXIS_TO_CF = (0, 2, 3, 1)


@dataclass
class OnnxValue:
    name: str  # ONNX value holding this TF tensor
    dtype: int  # ONNX element type
    rank: int | None
    cf: bool = False  # stored channels-first (NCHW) while TF sees NHWC


@dataclass
class OnnxBuilder:
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    vals: dict[str, OnnxValue] = field(default_factory=dict)  # TF tensor ref -> ONNX value
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # TF tensor ref -> constant
    _names: set[str] = field(default_factory=set)
    _cache: dict[tuple[str, str], str] = field(default_factory=dict)

    def reserve(self, names: Iterable[str]) -> None:
        self._names.update(names)

    def fresh(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            i += 1
            name = f"{hint}__{i}"
        self._names.add(name)
        return name

    def add(self, op: str, inputs: Sequence[str], hint: str, n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [self.fresh(f"{hint}:{k}" if k else hint) for k in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.fresh(f"{hint}/{op}"), **attrs))
        return outs

    def init(self, arr: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    # --- constants
    def is_const(self, ref: str) -> bool:
        return ref in self.consts

    def const(self, ref: str, what: str) -> np.ndarray:
        if ref not in self.consts:
            raise ValueError(f"{what} must be a constant, got computed tensor {ref!r}")
        return self.consts[ref]

    def rank(self, ref: str) -> int | None:
        return self.consts[ref].ndim if ref in self.consts else self.vals[ref].rank

    def dtype(self, ref: str) -> int:
        if ref in self.consts:
            return helper.np_dtype_to_tensor_dtype(self.consts[ref].dtype)
        return self.vals[ref].dtype

    def cf_capable(self, ref: str) -> bool:
        return self.rank(ref) == 4 or (ref in self.consts and self.consts[ref].ndim <= 4)

    # --- layout access
    def tf(self, ref: str) -> str:
        """ONNX name of `ref` in TF's own layout."""
        if ref in self.consts:
            return self._cached(ref, "const", lambda: self.init(self.consts[ref], ref))
        val = self.vals[ref]
        if not val.cf:
            return val.name
        # keyed by ONNX value so Identity aliases share one transpose
        return self._cached(val.name, "tf", lambda: self.add("Transpose", [val.name], f"{ref}/to_nhwc",
                                                             perm=list(_TO_TF))[0])

    def cf(self, ref: str) -> str:
        """ONNX name of `ref` channels-first; constants of rank <= 4 are broadcast-permuted."""
        if ref in self.consts:
            return self._cached(ref, "const_cf", lambda: self.init(_const_to_cf(self.consts[ref]), f"{ref}/cf"))
        val = self.vals[ref]
        if val.cf:
            return val.name
        if val.rank != 4:
            raise ValueError(f"tensor {ref!r} has rank {val.rank}; channels-first needs rank 4")
        return self._cached(val.name, "cf", lambda: self.add("Transpose", [val.name], f"{ref}/to_nchw",
                                                             perm=list(_TO_CF))[0])

    def _cached(self, ref: str, kind: str, make: Callable[[], str]) -> str:
        key = (ref, kind)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def set(self, ref: str, name: str, dtype: int, rank: int | None, cf: bool = False) -> None:
        self.vals[ref] = OnnxValue(name, dtype, rank, cf)

    def scalar(self, value: float | int, dtype: int, hint: str) -> str:
        """A shared scalar initializer (Clip bounds etc. repeat for every Relu6)."""
        arr = np.array(value, dtype=helper.tensor_dtype_to_np_dtype(dtype))
        return self._cached(f"{arr.dtype}:{arr.item()!r}", "scalar", lambda: self.init(arr, hint))


def _const_to_cf(arr: np.ndarray) -> np.ndarray:
    """Make an NHWC-broadcastable constant broadcast the same way against an NCHW tensor."""
    if arr.ndim == 0:
        return arr
    padded = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)
    return np.ascontiguousarray(padded.transpose(_TO_CF))


def out_ref(node: TfNode, k: int = 0) -> str:
    """The TF tensor ref of a node's k-th output."""
    return f"{node.name}:{k}"


# --------------------------------------------------------------------------- layout choice for n-ary ops


def use_cf(b: OnnxBuilder, refs: Iterable[str]) -> bool:
    """Run an n-ary op channels-first only if an input already is and all others can follow for free."""
    refs = list(refs)
    any_cf = any(r in b.vals and b.vals[r].cf for r in refs)
    return any_cf and all(b.cf_capable(r) for r in refs)


def inputs_in(b: OnnxBuilder, refs: Sequence[str]) -> tuple[list[str], bool]:
    """The inputs' ONNX names, all in the layout `use_cf` picks, and whether that is channels-first."""
    cf = use_cf(b, refs)
    return [b.cf(r) if cf else b.tf(r) for r in refs], cf


def out_rank(b: OnnxBuilder, refs: Sequence[str]) -> int | None:
    ranks = [b.rank(r) for r in refs]
    return None if any(r is None for r in ranks) else max(ranks)  # type: ignore[type-var]


# --------------------------------------------------------------------------- converter tables

Converter = Callable[[OnnxBuilder, TfNode], None]


def registrar(table: dict[str, Converter]) -> Callable[..., Callable[[Converter], Converter]]:
    """A decorator `@register("OpA", "OpB")` that puts the converter into `table` under each op name."""

    def register(*ops: str) -> Callable[[Converter], Converter]:
        def deco(fn: Converter) -> Converter:
            for op in ops:
                table[op] = fn
            return fn

        return deco

    return register
