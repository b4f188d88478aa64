"""The run directory, the unit of result: what it holds and how every reader finds its way in.

    config.yaml          the resolved run config (written first)
    env.json             versions, git commit, device
    metrics.jsonl        one row per logged step (with `skipped/<stream>/<reason>` counts once any)
    skipped.json         records skipped so far, per stream and reason: count and the first one seen
    checkpoints/step-N/  weights, optimizer and RNG state, data state (toolkit.train.checkpoint)
    eval/                evaluation results

Trainer, evaluation, grids and analysis all read and write runs through this module.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

import torch
import yaml

from toolkit.config import ConfigError, to_dict
from toolkit.data.images import CLIP_MEAN, CLIP_STD, ImageTransform
from toolkit.files import is_partial, write_atomic
from toolkit.train import checkpoint as ckpt
from toolkit.train.config import RunConfig, run_config_from_dict
from toolkit.train.distributed import DistInfo, barrier

CONFIG_FILE = "config.yaml"
ENV_FILE = "env.json"
SKIPPED_FILE = "skipped.json"


def load_run(run_dir: str | os.PathLike) -> RunConfig:
    """The resolved config of a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG_FILE}; not a run directory written by xmt train")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    return run_config_from_dict(data)


def find_checkpoint(path: str | os.PathLike) -> tuple[Path, Path]:
    """(run directory, checkpoint) of a run directory (its last checkpoint) or a checkpoint directory."""
    path = Path(path)
    if (path / CONFIG_FILE).is_file():
        checkpoint = ckpt.latest_checkpoint(path, weights_only=True)  # the newest whose weights verify
        if checkpoint is None:
            written = "none is complete" if ckpt.list_checkpoints(path) else "none yet"
            raise FileNotFoundError(f"{path}: the run has no checkpoint to read ({written})")
        return path, checkpoint
    if (path / "model.json").is_file():
        run_dir = path.parent.parent
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{path}: no run directory above it to read the tokenizer from")
        reason = ckpt.verify(path, weights_only=True) if (path / ckpt.STATE_FILE).is_file() else None
        if reason:
            raise ckpt.CheckpointError(f"{path}: not a complete checkpoint: {reason}")
        return run_dir, path
    raise FileNotFoundError(f"{path}: neither a run directory ({CONFIG_FILE}) nor a checkpoint (model.json)")


def image_transform(cfg: RunConfig) -> ImageTransform | None:
    """The pixels a run's vision tower reads (None for a text-only run)."""
    vision = cfg.model.vision
    if not vision.enabled:
        return None
    if vision.kind == "clip":
        return ImageTransform(vision.image_size, CLIP_MEAN, CLIP_STD)
    return ImageTransform(vision.image_size)


def environment(info: DistInfo) -> dict:
    """What produced the run: versions, git commit, device."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5)
            return out.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            return None

    import transformers

    import toolkit

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "xmt": toolkit.__version__,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain")),
        "device": str(info.device),
        "cuda_device": torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else None,
        "world_size": info.world_size,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }


def prepare_run_dir(cfg: RunConfig, run_dir: Path, info: DistInfo) -> None:
    """A new run: the directory must be new or empty (but for the temporary file of a write that a
    killed process left, which holds nothing and is removed); the resolved config is written first."""
    entries = list(run_dir.iterdir()) if run_dir.exists() else []
    occupied = any(not is_partial(p) for p in entries)
    barrier(info)  # every process has looked before the main one writes (else a slow rank sees its files)
    if occupied:
        raise ConfigError(f"{run_dir} exists and is not empty; continue it with: xmt train --resume {run_dir}")
    if info.is_main:
        for leftover in entries:
            leftover.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
        write_atomic(run_dir / ENV_FILE, json.dumps(environment(info), indent=2) + "\n")
    barrier(info)
