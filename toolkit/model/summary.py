"""Parameter-count summaries of presets, computed on the meta device."""

from __future__ import annotations

import torch

from toolkit.model.build import build_model, parameter_counts
from toolkit.model.presets import preset_config


def summarize_preset(name: str) -> dict:
    cfg = preset_config(name)
    with torch.device("meta"):
        model = build_model(cfg, init=False)
    d = cfg.decoder
    return {
        "preset": name,
        "layers": d.layers,
        "dim": d.dim,
        "heads": d.heads,
        "ffn_dim": d.ffn_dim,
        "vocab_size": d.vocab_size,
        "image_tokens": model.num_image_tokens,
        **parameter_counts(model),
    }
