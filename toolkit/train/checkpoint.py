"""Checkpoints of a run: `checkpoints/step-NNNNNNN/` with

    model.safetensors, model.json   the weights and model config (toolkit.model.save_model)
    trainer.pt                      optimizer state and RNG states: tensors and plain containers only,
                                    read with torch.load(weights_only=True), so never code
    state.json                      step, stage, stage step, data state (the mixture's), the resolved
                                    run config the checkpoint was trained under
    manifest.json                   size and SHA-256 of every other file, written last

Each is written into `step-NNNNNNN.tmp/`, flushed to disk and renamed when complete, so a killed process
never leaves a checkpoint that resume would pick up half-written. Readers take the newest checkpoint
that matches its manifest; one that does not (truncated, corrupted) is skipped with a warning naming
it. Only the last `keep` are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from toolkit.config import DataError
from toolkit.files import read_json
from toolkit.model.build import CONFIG_FILE as MODEL_CONFIG
from toolkit.model.build import WEIGHTS_FILE, save_model

log = logging.getLogger(__name__)
_STEP_DIR = re.compile(r"^step-(\d{7})$")
TRAINER_FILE = "trainer.pt"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
REQUIRED = (WEIGHTS_FILE, MODEL_CONFIG, STATE_FILE)  # what evaluation reads; resuming also needs trainer.pt


class CheckpointError(DataError):
    """A checkpoint's file that cannot be used (one line naming it)."""


def rng_state() -> dict:
    """Every generator's state as tensors and plain numbers (nothing that needs pickle to read)."""
    _, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    if isinstance(n, dict):
        n = ("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    if isinstance(p, dict):
        p = (p["version"], tuple(int(x) for x in p["internal"].tolist()), p["gauss"])
    np.random.set_state(n)  # the legacy format (before trainer states were tensors only) held these tuples
    random.setstate(p)
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_manifest(directory: Path) -> None:
    """Record the size and SHA-256 of every file in `directory` in its manifest, then flush the files,
    the manifest and the directory to disk."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": _digest(p)} for p in files}
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for path in [*files, directory / MANIFEST_FILE, directory]:
        _fsync(path)


def save_checkpoint(run_dir: Path, model, optimizer, state: dict, keep: int) -> Path:
    root = Path(run_dir) / "checkpoints"
    final = root / f"step-{state['step']:07d}"
    tmp = root / (final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, tmp)
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tmp / TRAINER_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    write_manifest(tmp)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _fsync(root)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories, oldest first (temporary directories are ignored; not verified)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name))


def verify(checkpoint: Path, weights_only: bool = False) -> str | None:
    """Why `checkpoint` cannot be used (a missing file, a size or digest that differs from its
    manifest), or None when it is complete. `weights_only`: only what evaluation reads (weights,
    model config, state), not the trainer state that only a resume needs. A checkpoint without a
    manifest (written before manifests were) needs its files and a readable weights header."""
    checkpoint = Path(checkpoint)
    missing = [name for name in REQUIRED if not (checkpoint / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    manifest_path = checkpoint / MANIFEST_FILE
    if not manifest_path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(checkpoint / WEIGHTS_FILE), "pt") as f:
                f.keys()
        except Exception as err:  # safetensors raises its own error types for a broken header
            return f"{WEIGHTS_FILE} unreadable ({str(err).splitlines()[0]})"
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return f"{MANIFEST_FILE} is not valid JSON"
    for name, want in sorted(manifest.items()):
        if weights_only and name not in REQUIRED:
            continue
        path = checkpoint / name
        if not path.is_file():
            return f"{name} missing"
        if path.stat().st_size != want["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, the manifest says {want['bytes']}"
        if _digest(path) != want["sha256"]:
            return f"{name} does not match its SHA-256 in the manifest"
    return None


def latest_checkpoint(run_dir: Path, weights_only: bool = False) -> Path | None:
    """The newest checkpoint that verifies (`weights_only`: as evaluation reads it); each newer one
    that does not is skipped with a warning."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        reason = verify(checkpoint, weights_only)
        if reason is None:
            return checkpoint
        log.warning("skipping checkpoint %s: %s", checkpoint, reason)
    return None


def read_state(checkpoint: Path) -> dict:
    return read_json(Path(checkpoint) / STATE_FILE)


def load_trainer_state(checkpoint: Path) -> dict:
    """Optimizer and RNG state, read as data only: a file that holds anything but tensors and plain
    containers (such as a pickle that would run code) is refused."""
    path = Path(checkpoint) / TRAINER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; this checkpoint holds weights only and cannot be resumed")
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        allowed = {f"{g.__module__}.{g.__name__}" for g in _LEGACY_NUMPY}
        named = ", ".join(g for g in found if g not in allowed) or "an object that is not data"
        raise CheckpointError(
            f"{path}: refused to load: it would build {named}; a trainer state holds tensors and plain values only"
        ) from None


def _legacy_numpy() -> list:
    """numpy arrays as the legacy trainer state held them (the numpy RNG key): safe to rebuild."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


_LEGACY_NUMPY = _legacy_numpy()
