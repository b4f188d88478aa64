"""Checkpoints of a run: `checkpoints/step-NNNNNNN/` with

    model.safetensors, model.json   the weights and model config (toolkit.model.save_model)
    trainer.pt                      optimizer state and RNG states
    state.json                      step, stage, stage step, data state (the mixture's), last metrics

Each is written into `step-NNNNNNN.tmp/` and renamed when complete, so a killed process never leaves a
checkpoint that resume would pick up half-written. Only the last `keep` are kept.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from toolkit.model.build import save_model

_STEP_DIR = re.compile(r"^step-(\d{7})$")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, model, optimizer, state: dict, keep: int) -> Path:
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{state['step']:07d}"
    tmp = root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tmp / "trainer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "state.json").read_text())


def load_trainer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "trainer.pt", weights_only=False)
