"""The Kosmos-1 model: attention backends, positions, Magneto decoder, vision, resampler, inference."""

from toolkit.model.build import build_model, load_model, parameter_counts, save_model
from toolkit.model.config import DecoderConfig, ModelConfig, ResamplerConfig, SpecialTokens, VisionConfig
from toolkit.model.kosmos import ImageSpanError, KosmosModel, KosmosOutput
from toolkit.model.presets import PRESETS, preset_config

__all__ = [
    "PRESETS",
    "DecoderConfig",
    "ImageSpanError",
    "KosmosModel",
    "KosmosOutput",
    "ModelConfig",
    "ResamplerConfig",
    "SpecialTokens",
    "VisionConfig",
    "build_model",
    "load_model",
    "parameter_counts",
    "preset_config",
    "save_model",
]
