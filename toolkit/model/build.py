"""Build a ready model from its config, count its parameters, save and load it as safetensors."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_model as st_load_model
from safetensors.torch import save_model as st_save_model

from toolkit.config import DataError, from_dict, to_dict
from toolkit.files import atomic_path, read_json, write_atomic
from toolkit.model.config import ModelConfig
from toolkit.model.kosmos import KosmosModel
from toolkit.model.vision import CLIP_FIELDS

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


def build_model(cfg: ModelConfig, init: bool = True, seed: int | None = None) -> KosmosModel:
    """Construct the model (on the current default device) and run its one explicit init_weights().

    With `seed`, the RNG is seeded right before init_weights(), which initialises the decoder first:
    a text-only and a multimodal model with the same seed start from the same decoder weights.
    Build under `torch.device("meta")` with init=False to inspect shapes without allocating memory.
    Order of the optional wrappers: activation checkpointing (inside the decoder's forward), then
    compile; data parallelism, when used, is applied by the trainer after both.
    """
    model = KosmosModel(cfg)
    if init:
        if seed is not None:
            torch.manual_seed(seed)
        model.init_weights()
    if cfg.decoder.compile:
        apply_compile(model)
    return model


def apply_compile(model: KosmosModel) -> None:
    """torch.compile each decoder block in place (parameter names do not change)."""
    for layer in model.decoder.layers:
        layer.compile()


def parameter_counts(model: KosmosModel) -> dict[str, int]:
    """Parameters per component; tied matrices count once."""

    def count(params) -> int:
        return sum(p.numel() for p in params)

    dec = model.decoder
    embeddings = count(list(dec.embed_tokens.parameters()) + list(dec.positions.parameters()))
    decoder = count(dec.parameters()) - embeddings
    vision = count(model.vision.parameters()) if model.vision is not None else 0
    resampler = count(model.resampler.parameters()) if model.resampler is not None else 0
    return {
        "embedding_params": embeddings,
        "decoder_params": decoder,
        "language_model_params": embeddings + decoder,
        "vision_params": vision,
        "resampler_params": resampler,
        "trainable_params": count(p for p in model.parameters() if p.requires_grad),
        "frozen_params": count(p for p in model.parameters() if not p.requires_grad),
        "total_params": count(model.parameters()),
    }


def self_contained_config(model: KosmosModel) -> ModelConfig:
    """The model's config with a CLIP `vision.path` replaced by the shape read from it.

    Saved weights then rebuild without the original Hugging Face directory.
    """
    cfg = model.cfg
    if cfg.vision.kind != "clip" or not cfg.vision.path:
        return cfg
    hf = model.vision.model.config
    vision = dataclasses.replace(
        cfg.vision, path=None, **{ours: getattr(hf, theirs) for ours, theirs in CLIP_FIELDS.items()}
    )
    return dataclasses.replace(cfg, vision=vision)


def save_model(model: KosmosModel, directory: str | os.PathLike) -> Path:
    """Write model.json (config) and model.safetensors into `directory`, each via a temporary name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        st_save_model(model, str(tmp))
    write_atomic(directory / CONFIG_FILE, json.dumps(to_dict(self_contained_config(model)), indent=2) + "\n")
    return directory


def load_model_config(directory: str | os.PathLike) -> ModelConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config; expected a directory written by save_model")
    return from_dict(ModelConfig, read_json(path), prefix="model")


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> KosmosModel:
    """Rebuild the model from model.json and fill it from model.safetensors (all keys must match)."""
    cfg = load_model_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no weights file")
    with torch.device(device):
        model = build_model(cfg, init=False)
    missing, unexpected = st_load_model(model, str(weights), strict=False, device=str(device))
    if missing or unexpected:
        raise DataError(
            f"{weights}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    return model
