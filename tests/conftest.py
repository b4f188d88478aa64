import pytest
import torch

from toolkit.config import merge
from toolkit.model import ModelConfig, build_model, preset_config


def tiny_config(**overrides) -> ModelConfig:
    """The tiny preset shrunk further for unit tests; nested dict overrides as keyword arguments."""
    cfg = preset_config(
        "tiny",
        {
            "decoder": {"vocab_size": 64, "dim": 32, "layers": 2, "heads": 4, "ffn_dim": 64, "max_len": 64},
            "vision": {"image_size": 16, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "mlp_dim": 32},
            "resampler": {"num_latents": 3},
        },
    )
    return merge(cfg, overrides) if overrides else cfg


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model(tiny_config(**overrides))
    return model.eval()


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
