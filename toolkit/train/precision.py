"""Training precision: fp32, bf16 autocast, or `auto` (bf16 where the hardware multiplies bf16 natively)."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 matrix products run ~2-3x faster than fp32 (without them, slower)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_device(device: str) -> str:
    """`auto` -> cuda when a CUDA GPU is available, else cpu; cpu/cuda stay as given."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(name: str, device: torch.device | str) -> str:
    """`auto` -> bf16 on CUDA and on CPUs with native bf16, else fp32; fp32/bf16 stay as given."""
    if name != "auto":
        return name
    kind = torch.device(device).type
    if kind == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "fp32"
