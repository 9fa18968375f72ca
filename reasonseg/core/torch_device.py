"""`device` / `dtype` settings (`auto | cpu | cuda | cuda:N`) -> what torch takes, with one clear error."""
from __future__ import annotations


def resolve_device(device: str, setting: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{setting}={device} but CUDA is not available here")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"{setting}={device} but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def resolve_dtype(dtype: str, device: str):
    """`auto`: bfloat16 on CUDA, float32 on CPU (CPU kernels for half types are slow or missing)."""
    import torch

    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return getattr(torch, dtype)
