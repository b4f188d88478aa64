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


SMALL_WORLD = {
    "counts": {"text": 600, "pairs": 600, "interleaved": 150, "instructions": 200, "rendered": 150},
    "eval": {"images_per_category": 1, "raven": 8, "rendered_sentiment": 20, "size_pairs": 40, "language_mc": 20},
    "samples_per_shard": 250,
}


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A world with few samples per stream (built once per test session)."""
    from toolkit.world.build import build_world
    from toolkit.world.config import world_config

    out = tmp_path_factory.mktemp("world") / "w"
    build_world(world_config("tiny", SMALL_WORLD), out, seed=0, progress=False, echo=lambda s: None)
    return out


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


TINY_MODEL = {
    "decoder": {"dim": 32, "layers": 2, "heads": 4, "ffn_dim": 64, "max_len": 64},
    "vision": {"width": 32, "layers": 1, "heads": 2, "mlp_dim": 64},
    "resampler": {"num_latents": 4},
}


def run_dict(world, steps=12, **extra):
    data = {
        "name": "test",
        "seed": 0,
        "model_preset": "tiny",
        "model": TINY_MODEL,
        "data": {
            "world": str(world),
            "world_overrides": SMALL_WORLD,  # the settings the small world was built with
            "max_len": 48,
            "streams": [
                {"name": "text", "kind": "text", "paths": ["{world}/text/*.jsonl"], "batch_size": 4},
                {"name": "pairs", "kind": "pairs", "paths": ["{world}/pairs/*.tar"], "batch_size": 4},
                {"name": "interleaved", "kind": "interleaved", "paths": ["{world}/interleaved/*.tar"], "batch_size": 2},
            ],
        },
        "stages": [{"name": "pretrain", "steps": steps, "lr": 3e-3, "warmup": 2, "schedule": "cosine"}],
        "checkpoint": {"every": 4, "keep": 10},
        "logging": {"every": 1, "progress": False, "tensorboard": False},
        "threads": 1,
        "precision": "fp32",  # the exactness tests state fp32; bf16 is tested where named
    }
    for key, value in extra.items():
        data[key] = value
    return data


@pytest.fixture(scope="session")
def random_run(small_world, tmp_path_factory):
    """A run whose checkpoint is the randomly initialised tiny model (one step at lr ~0)."""
    from toolkit.train.config import run_config_from_dict
    from toolkit.train.loop import run_training

    out = tmp_path_factory.mktemp("evalrun") / "r"
    data = run_dict(small_world, steps=1)
    data["stages"] = [{"name": "init", "steps": 1, "lr": 1e-12, "warmup": 0, "schedule": "constant"}]
    run_training(run_config_from_dict(data), out)
    return out


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """Tiny random Hugging Face checkpoints of every family, written once per test session."""
    from hf_models import all_families

    return all_families(tmp_path_factory.mktemp("hf"))
