"""Runs stored under the first rule for training keys, renamed to the current rule's names.

The first rule hashed `precision: auto` as written, so a machine that trains in bf16 and one that
trains in fp32 shared one key for different weights, and it hashed the text-only arm's vision
settings, which that arm never builds, so identical LLMs had several keys. `adopt_runs` renames each
run a grid's cells trained under the first rule to its current key (its precision as stored in its
config), leaves a link at the old name (cells of other grids reach the run through their links) and
points the grid's own cells at the new name.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import yaml

from toolkit.files import read_json
from toolkit.grid.run import _write_status, key_digest, replace_link, training_key, weights_identity
from toolkit.grid.spec import Grid
from toolkit.train.rundir import CONFIG_FILE


def first_rule_key(cfg) -> str:
    """A run's training key under the first rule: the digest of its `weights_identity` alone."""
    return key_digest(weights_identity(cfg))


def _adopt(cfg, runs: Path) -> tuple[Path, bool] | None:
    """Rename the run `cfg` trained under a first-rule key: (the old name, now a link to the current
    one; whether this call renamed it), or None when there is nothing to adopt or not yet. With an
    explicit precision, a run of the same config with `precision: auto` that trained in that precision
    is the same training and is adopted too."""
    olds = [runs / first_rule_key(cfg)]
    if cfg.precision != "auto":
        olds.append(runs / first_rule_key(dataclasses.replace(cfg, precision="auto")))
    for old in olds:
        if old.is_symlink():
            return old, False
        if not (old / CONFIG_FILE).is_file():
            continue
        stored = yaml.safe_load((old / CONFIG_FILE).read_text()).get("precision", "fp32")
        new = runs / training_key(cfg, precision=stored)
        if (cfg.precision != "auto" and stored != cfg.precision) or new.exists() or new.is_symlink():
            continue  # another training; the same name; or an identical LLM already holds the name
        with open(runs / f"{old.name}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # training now (an older xmt): adopted by a later call
                return None
            old.rename(new)
            replace_link(old, new.name)
        return old, True
    return None


def adopt_runs(grid: Grid, out: Path, echo: Callable[[str], None] = print) -> int:
    """Rename the runs of `grid`'s cells (results in `out`, runs beside it in `out/../runs`) and of
    their first stages (the runs a multi-stage run starts from) stored under first-rule keys; returns
    how many were renamed. A run being trained (its lock held) is left for the next call, and one
    whose current key already names a run (an identical LLM stored twice) stays where it is."""
    runs = out.parent / "runs"
    if not runs.is_dir():
        return 0
    moved = 0
    for cell in grid.cells():
        stages = cell.config.stages
        for j in range(1, len(stages)):  # the runs its first stages trained (no cell of this grid links them)
            adopted = _adopt(dataclasses.replace(cell.config, stages=stages[:j]), runs)
            moved += bool(adopted and adopted[1])
        adopted = _adopt(cell.config, runs)
        if adopted is None:
            continue
        old, renamed = adopted
        moved += renamed
        cell_dir, new_name = out / cell.id, os.readlink(old)
        link = cell_dir / "run"
        if link.is_symlink() and Path(os.readlink(link)).name == old.name:
            replace_link(link, os.path.relpath(runs / new_name, cell_dir))
        status = cell_dir / "status.json"
        if status.is_file():
            s = read_json(status)
            if s.get("training_key") == old.name:
                s["training_key"] = new_name
                _write_status(cell_dir, s)
    if moved:
        echo(f"{moved} runs renamed to their current training keys (the old names link to them)")
    return moved
