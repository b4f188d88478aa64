"""Hugging Face model families, read from local directories (never downloaded), behind the interface
xmt's evaluation uses for its own models: `rank`, `generate` and `states` over prompts of text and
images. `load_family(path)` picks the family from the directory's config.json."""

from toolkit.families import causal_lm, idefics3, llava, paligemma, qwen2_vl  # noqa: F401  (each registers its family)
from toolkit.families.base import FAMILIES, MODEL_TYPES, HFAdapter, detect_family, is_hf_dir


def load_family(path, device: str = "cpu", batch_size: int = 16, attention: str = "sdpa") -> HFAdapter:
    """The adapter of the Hugging Face checkpoint at `path` (its family from config.json)."""
    return FAMILIES.get(detect_family(path))(path, device=device, batch_size=batch_size, attention=attention)


__all__ = ["FAMILIES", "MODEL_TYPES", "HFAdapter", "detect_family", "is_hf_dir", "load_family"]
