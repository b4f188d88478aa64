"""Named hook points, hooks added only inside a context manager, and an activation cache.

Hook point names (see `hook_names(model)`):
    hook_embeds                     (B, T, dim) input embeddings with the images in place
    hook_image_embeds               (M, N, dim) image embeddings after the resampler
    decoder.layers.{i}.hook_attn_out, .hook_mlp_out, .hook_resid_post   (B, T, dim)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from toolkit.model.decoder import HookPoint

Tensor = torch.Tensor


def hook_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, HookPoint)]


def residual_stream(model: nn.Module) -> list[str]:
    """The residual stream's hook points, input embeddings first, then each decoder block's output."""
    return ["hook_embeds"] + [f"decoder.layers.{i}.hook_resid_post" for i in range(len(model.decoder.layers))]


@contextlib.contextmanager
def hooks(model: nn.Module, fns: dict[str, Callable[[Tensor], Tensor | None]]) -> Iterator[None]:
    """Run with forward hooks on the named hook points; a hook may return a replacement tensor.
    Every hook is removed on exit, also when the body raises."""
    modules = dict(model.named_modules())
    unknown = [n for n in fns if not isinstance(modules.get(n), HookPoint)]
    if unknown:
        raise KeyError(f"unknown hook point(s) {unknown}; available: {', '.join(hook_names(model))}")
    handles = []
    try:
        for name, fn in fns.items():
            handles.append(modules[name].register_forward_hook(lambda mod, inp, out, fn=fn: fn(out)))
        yield
    finally:
        for h in handles:
            h.remove()


@dataclass
class ActivationCache:
    """Activations by hook point name, detached (and on the CPU)."""

    store: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        return self.store[name]

    def resid(self, layer: int) -> Tensor:
        """(B, T, dim) residual stream after block `layer` (-1: the last)."""
        names = sorted((n for n in self.store if n.endswith("hook_resid_post")), key=lambda n: int(n.split(".")[2]))
        return self.store[names[layer]]

    def layers(self) -> list[Tensor]:
        """Residual stream per block, in order: a list of (B, T, dim)."""
        names = sorted((n for n in self.store if n.endswith("hook_resid_post")), key=lambda n: int(n.split(".")[2]))
        return [self.store[n] for n in names]


@contextlib.contextmanager
def cache_activations(model: nn.Module, names: list[str] | None = None) -> Iterator[ActivationCache]:
    """Record the outputs of the named hook points (all of them by default) while the body runs."""
    cache = ActivationCache()
    names = names if names is not None else hook_names(model)

    def keep(name: str):
        def fn(out: Tensor) -> None:
            cache.store[name] = out.detach().cpu()

        return fn

    with hooks(model, {n: keep(n) for n in names}):
        yield cache


def select(
    states: Tensor, input_ids: Tensor, tokens, modality: str = "text", positions: Tensor | None = None
) -> list[Tensor]:
    """Per sequence, the rows of `states` (B, T, dim) at text-token positions (words: no special or
    delimiter tokens) or image-embedding positions (`modality`), optionally only at `positions`."""
    image = input_ids == tokens.image_pad
    special = torch.isin(input_ids, torch.tensor([tokens.pad, tokens.bos, tokens.eos, tokens.image, tokens.image_end]))
    keep = image if modality == "image" else ~image & ~special
    if modality not in ("text", "image"):
        raise ValueError(f"modality must be text or image, got {modality!r}")
    if positions is not None:
        keep = keep & positions
    return [states[b][keep[b].to(states.device)] for b in range(states.shape[0])]
