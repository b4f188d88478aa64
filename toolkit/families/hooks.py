"""Named hook points on a Hugging Face family's decoder, with the names xmt's own model uses:

    embeds                  (B, T, dim) the decoder's input: token embeddings with the images in place
    layers.{i}.attn_out     (B, T, dim) block i's self-attention output (before the residual add)
    layers.{i}.mlp_out      (B, T, dim) block i's MLP output (before the residual add)
    layers.{i}.resid_post   (B, T, dim) the residual stream after block i

A hook function gets the tensor and may return a replacement (an intervention); hooks exist only
inside the `hooks` context."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn


def hook_points(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """name -> (module, "input" | "output"): where each named tensor is read."""
    layers = model.get_decoder().layers
    points = {"embeds": (layers[0], "input")}
    for i, layer in enumerate(layers):
        points[f"layers.{i}.attn_out"] = (layer.self_attn, "output")
        points[f"layers.{i}.mlp_out"] = (layer.mlp, "output")
        points[f"layers.{i}.resid_post"] = (layer, "output")
    return points


def _replace_first(value, fn):
    """Apply `fn` to the tensor a module returned (alone or first of a tuple)."""
    if isinstance(value, torch.Tensor):
        new = fn(value)
        return value if new is None else new
    new = fn(value[0])
    return value if new is None else (new, *value[1:])


@contextlib.contextmanager
def hooks(model: nn.Module, fns: dict[str, Callable[[torch.Tensor], torch.Tensor | None]]) -> Iterator[None]:
    points = hook_points(model)
    unknown = [n for n in fns if n not in points]
    if unknown:
        raise KeyError(f"unknown hook point(s) {unknown}; available: embeds, layers.N.attn_out|mlp_out|resid_post")
    handles = []
    try:
        for name, fn in fns.items():
            module, where = points[name]
            if where == "output":
                handles.append(module.register_forward_hook(lambda m, a, out, fn=fn: _replace_first(out, fn)))
            else:

                def pre(m, args, kwargs, fn=fn):
                    if args:
                        return (_replace_first(args, fn), kwargs)
                    return args, {**kwargs, "hidden_states": _replace_first(kwargs["hidden_states"], fn)}

                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def cache_activations(model: nn.Module, names) -> Iterator[dict[str, torch.Tensor]]:
    """The named tensors of the forward passes run inside, detached, on the CPU."""
    store: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(t):
            store[name] = t.detach().float().cpu()

        return fn

    with hooks(model, {n: keep(n) for n in names}):
        yield store
