"""What may change between a checkpoint and the config a run resumes under.

Every checkpoint records the resolved run config it was trained under (`state.json`). A resumed run
is the run its config says only if nothing that shaped the weights so far changed: the model, the
data, the optimizer, the seed, the precision, and the stages already (partly) trained. Those are
refused, naming the keys; the rest (where logs and checkpoints go and how often, evaluation, threads,
device, the stages still to come, the order in which streams are listed, where the same world or
pretrained tower now lives) may change and is recorded in metrics.jsonl.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from toolkit.config import ConfigError, differences

SAFE = ("name", "logging", "checkpoint", "threads", "eval", "device", "distributed")


def _same_world(saved: dict, old: str | None, new: str | None) -> bool:
    """The world moved, not changed: both paths hold (or would be built as) the same world."""
    from toolkit.world.build import world_identity

    data = saved.get("data", {})
    args = (data.get("world_preset", "tiny"), data.get("world_seed", 0), data.get("world_overrides"))
    return old is not None and new is not None and world_identity(old, *args) == world_identity(new, *args)


def _same_tower(saved: dict, old: str | None, new: str | None) -> bool:
    """A pretrained tower found elsewhere: its directory is named by the digest of its settings and
    renders (`towers/<stem>-<digest>`, beside the world), so the same name is the same tower."""
    vision = saved.get("model", {}).get("vision", {})
    pretrained = bool((vision.get("pretrain") or {}).get("steps"))
    return pretrained and old is not None and new is not None and PurePath(old).name == PurePath(new).name


# keys that name where something lives; a change is safe when what lives there is the same
MOVABLE = {"data.world": _same_world, "model.vision.path": _same_tower}


def check_resume(saved: dict | None, current: dict, stage: int, stage_step: int) -> dict[str, tuple[Any, Any]]:
    """The safe changes from the checkpoint's config `saved` to `current` (a resolved config each);
    ConfigError naming the keys when anything else changed. The checkpoint is at `stage`, `stage_step`:
    stages before it, and it too once a step of it ran, are trained and may not change. None for
    `saved` (a checkpoint from before configs were recorded): nothing to compare."""
    if saved is None:
        return {}
    trained = stage + (1 if stage_step > 0 else 0)

    def by_name(streams: list | None) -> dict | None:  # a mixture's streams are named; their order is free
        return None if streams is None else {str(s.get("name")): s for s in streams}

    def indexed(cfg: dict) -> dict:
        stages = {str(i): {**st, "streams": by_name(st.get("streams"))} for i, st in enumerate(cfg.get("stages", []))}
        data = {**cfg.get("data", {}), "streams": by_name(cfg.get("data", {}).get("streams"))}
        return {**cfg, "data": data, "stages": stages}

    changes = differences(indexed(saved), indexed(current))

    def safe(key: str) -> bool:
        parts = key.split(".")
        if key in MOVABLE:
            return MOVABLE[key](saved, *changes[key])
        return parts[0] in SAFE or (parts[0] == "stages" and len(parts) > 1 and int(parts[1]) >= trained)

    unsafe = sorted(key for key in changes if not safe(key))
    if unsafe:
        shown = "; ".join(f"{key}: {changes[key][0]!r} -> {changes[key][1]!r}" for key in unsafe[:4])
        more = f" and {len(unsafe) - 4} more" if len(unsafe) > 4 else ""
        raise ConfigError(
            f"the run's config changed what its checkpoint was trained under ({shown}{more}); restore those "
            f"keys or train a new run with --out (may change: {', '.join(SAFE)}, stages not yet started)"
        )
    return changes
