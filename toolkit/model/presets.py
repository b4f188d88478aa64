"""Named model presets as data: overrides of the ModelConfig defaults (which are Kosmos-1's)."""

from __future__ import annotations

from typing import Any

from toolkit.config import from_dict, merge
from toolkit.model.config import ModelConfig
from toolkit.registry import Registry

PRESETS: Registry[dict[str, Any]] = Registry("model preset")

# Kosmos-1 (paper §2.1 and Table 17): 24 layers, 2048 hidden, 8192 FFN, 32 heads, max length 2048,
# Magneto + xPos, CLIP ViT-L/14 at 224 px frozen except its last layer, 64 image embeddings.
PRESETS.add("kosmos-1.3b", {})

# Trains on 2 CPU cores in minutes on the synthetic world: a 4-layer decoder of width 128 over a
# world-sized vocabulary, a small ViT (patch 8 on 32 px images) trained from scratch, 8 latents.
PRESETS.add(
    "tiny",
    {
        "decoder": {
            "vocab_size": 2048,
            "dim": 128,
            "layers": 4,
            "heads": 4,
            "ffn_dim": 512,
            "max_len": 256,
            "dropout": 0.0,
            "attention_dropout": 0.0,
        },
        "vision": {
            "kind": "vit",
            "freeze": "none",
            "image_size": 32,
            "patch_size": 8,
            "width": 128,
            "layers": 2,
            "heads": 4,
            "mlp_dim": 256,
        },
        "resampler": {"num_latents": 8},
    },
)

# A laptop-GPU / long-CPU scale between the two.
PRESETS.add(
    "small",
    {
        "decoder": {"vocab_size": 8192, "dim": 512, "layers": 8, "heads": 8, "ffn_dim": 2048, "max_len": 512},
        "vision": {
            "kind": "vit",
            "freeze": "none",
            "image_size": 64,
            "patch_size": 8,
            "width": 256,
            "layers": 4,
            "heads": 4,
            "mlp_dim": 1024,
        },
        "resampler": {"num_latents": 16},
    },
)


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The ModelConfig of preset `name`, with optional nested overrides."""
    cfg = from_dict(ModelConfig, PRESETS.get(name), prefix="model")
    return merge(cfg, overrides, prefix="model") if overrides else cfg
