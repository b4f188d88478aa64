"""Attention backends with one signature, chosen by name.

Every backend takes q, k, v of shape (B, H, T, D) -- q already multiplied by head_dim**-0.5, as in
torchscale -- and an `AttentionMask`, and returns (out (B, H, Tq, D), weights or None). `eager` is the
reference and the only backend that returns weights (B, H, Tq, Tk). `auto` resolves to xformers on
CUDA when it imports, else sdpa. xformers is imported lazily, only when selected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toolkit.registry import Registry

Tensor = torch.Tensor
AttentionFn = Callable[..., tuple[Tensor, Tensor | None]]
BACKENDS: Registry[AttentionFn] = Registry("attention backend")


@dataclass
class AttentionMask:
    """Which keys each query may see.

    Queries are the last `q_len` positions of the `k_len` keys (bottom-right aligned, as with a KV
    cache). `key_valid` (B, Tk) marks real tokens (False = padding). A query always sees its own key,
    so no row is empty: padded query rows produce finite values that callers ignore.
    """

    q_len: int
    k_len: int
    causal: bool = True
    key_valid: Tensor | None = None  # (B, Tk) bool
    device: torch.device | None = None  # where `dense` is built when there is no key_valid (default: CPU)

    @property
    def is_trivial(self) -> bool:
        """Nothing is masked at all: non-causal without padding, or one query (the last position,
        which sees every key) without padding, as in each step of cached decoding."""
        return self.key_valid is None and (not self.causal or self.q_len == 1)

    @property
    def is_plain_causal(self) -> bool:
        """Square causal mask without padding (backends have a fast path for it)."""
        return self.causal and self.key_valid is None and self.q_len == self.k_len > 1

    @functools.cached_property
    def dense(self) -> Tensor | None:
        """(B or 1, 1, Tq, Tk) bool, True = may attend; None when nothing is masked."""
        if self.is_trivial:
            return None
        device = self.key_valid.device if self.key_valid is not None else self.device
        q_pos = torch.arange(self.k_len - self.q_len, self.k_len, device=device)[:, None]  # (Tq, 1)
        k_pos = torch.arange(self.k_len, device=device)[None, :]  # (1, Tk)
        allowed = k_pos <= q_pos if self.causal else torch.ones_like(k_pos == q_pos)
        allowed = allowed[None, None]  # (1, 1, Tq, Tk)
        if self.key_valid is not None:
            allowed = allowed & (self.key_valid[:, None, None, :] | (k_pos == q_pos))
        return allowed

    def dense_on(self, device: torch.device) -> Tensor | None:
        """`dense` on `device` (a copy only when the mask was built elsewhere)."""
        dense = self.dense
        return dense if dense is None or dense.device == device else dense.to(device)


@BACKENDS.register("eager")
def eager_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, dropout_p: float = 0.0):
    scores = torch.matmul(q, k.transpose(-1, -2))  # (B, H, Tq, Tk)
    dense = mask.dense_on(q.device)
    if dense is not None:
        scores = scores.masked_fill(~dense, float("-inf"))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    probs = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return torch.matmul(probs, v), weights


@BACKENDS.register("sdpa")
def sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, dropout_p: float = 0.0):
    half = (torch.bfloat16, torch.float16)
    if q.device.type == "cpu" and (q.dtype in half or torch.is_autocast_enabled("cpu")):
        # PyTorch's CPU flash-attention backward is ~3x slower in bf16 than in fp32 (measured on the
        # tiny preset under bf16 autocast); attention is a small share of the FLOPs, so run it in fp32
        # (autocast off, or it would cast the inputs back).
        up = lambda t: t.float() if t.dtype in half else t  # noqa: E731
        with torch.autocast("cpu", enabled=False):
            out, _ = sdpa_attention(up(q), up(k), up(v), mask, dropout_p)
        return out.to(q.dtype), None
    if mask.is_plain_causal:
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=1.0)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.dense_on(q.device), dropout_p=dropout_p, scale=1.0)
    return out, None


def _xformers_bias(mask: AttentionMask, q: Tensor, heads: int):
    from xformers.ops.fmha.attn_bias import LowerTriangularFromBottomRightMask

    if mask.is_trivial:
        return None
    if mask.causal and mask.key_valid is None:
        return LowerTriangularFromBottomRightMask()
    # Additive bias (B, H, Tq, Tk); xformers wants the last dim's storage aligned to 8 elements.
    batch = mask.key_valid.shape[0]
    padded = (mask.k_len + 7) // 8 * 8
    bias = torch.zeros(batch, heads, mask.q_len, padded, dtype=q.dtype, device=q.device)[..., : mask.k_len]
    bias.masked_fill_(~mask.dense_on(q.device), float("-inf"))
    return bias


@BACKENDS.register("xformers")
def xformers_attention(q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, dropout_p: float = 0.0):
    if q.device.type != "cuda":
        raise RuntimeError(
            "attention backend 'xformers' needs CUDA tensors (xformers has no CPU kernels); "
            "use attention: sdpa or auto on CPU"
        )
    try:
        import xformers.ops as xops
    except ImportError as err:
        raise RuntimeError(f"attention backend 'xformers' selected but xformers does not import: {err}") from err

    bias = _xformers_bias(mask, q, q.shape[1])
    # xformers layout is (B, T, H, D).
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p, scale=1.0
    )
    return out.transpose(1, 2), None


@functools.cache
def xformers_available() -> bool:
    """xformers imports and its CUDA kernels run here (a wheel built for another torch imports but has none)."""
    if not torch.cuda.is_available():
        return False
    try:
        import xformers.ops as xops

        q = torch.zeros(1, 8, 1, 64, device="cuda", dtype=torch.bfloat16)
        xops.memory_efficient_attention(q, q, q)
    except Exception:  # a missing wheel, an ABI mismatch, no kernel for this card: not available
        return False
    return True


def resolve_backend(name: str, device: torch.device | str | None = None) -> str:
    """Map a configured name to a concrete backend name; `auto` picks xformers on CUDA, else sdpa."""
    if name == "auto":
        on_cuda = device is not None and torch.device(device).type == "cuda"
        return "xformers" if on_cuda and xformers_available() else "sdpa"
    BACKENDS.get(name)  # raises with the valid names
    if name == "xformers" and not torch.cuda.is_available():
        raise RuntimeError(
            "attention backend 'xformers' needs a CUDA GPU, and none is available; use attention: auto or sdpa on CPU"
        )
    return name


def check_backend_name(name: str) -> None:
    if name != "auto":
        BACKENDS.get(name)


def attend(
    q: Tensor, k: Tensor, v: Tensor, mask: AttentionMask, backend: str, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor | None]:
    """Run attention with a concrete backend name (`auto` is resolved from the tensors' device)."""
    if backend == "auto":
        backend = resolve_backend("auto", q.device)
    return BACKENDS.get(backend)(q, k, v, mask, dropout_p)
