"""Grid files and their cells.

A grid file (YAML) says what it answers and how:

    question: Does multimodal training help text-only colour questions about vision-only objects?
    mirrors: Table 16
    base: ../runs/tiny-mllm.yaml         # a run config, relative to this file
    overrides: {stages.0.steps: 800}     # applied to every cell
    axes: {model.resampler.num_latents: [4, 8, 16]}       # cartesian product
    zip: [{model.vision.kind: [vit, none], name: [mllm, llm]}]   # changed together
    seeds: [0, 1, 2]                     # training seeds
    tasks: [world-colour, world-size]
    shots: [0]
    ablations: [none]                    # few-shot demo controls
    data: {memorycolor: data/memory_color/memory_color_data.csv}   # eval data paths
    scales: {paper: {base: ../runs/kosmos-1.3b.yaml, overrides: {...}}}   # other scales of the same grid
    compare: [[name=mllm, name=llm]]     # arm pairs for paired statistics (key=value selectors)

A cell is one run config (base + overrides + one value per axis + a seed); its id is a hash of the
resolved config (the world by its identity, not its location) and of the version of the rule that
orders the data streams (`toolkit.data.mixture.ORDER_VERSION`), so the same settings always land in
the same directory and finished work is reused, and results trained on data in another order are
never mixed in. A scale (`--scale NAME`, one of `scales:`) is the same grid at another budget or
with other data: another base, overrides, a factor on every stage's steps, other seeds, tasks,
shots or evaluation limits; `tiny` is the grid as written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.config import ConfigError, deep_update, from_dict, read_yaml, to_dict
from toolkit.data.mixture import ORDER_VERSION
from toolkit.train.config import RunConfig, read_run_yaml, run_config_from_dict
from toolkit.world.build import world_identity


@dataclass
class ScaleConfig:
    base: str | None = None  # another base run config for this scale
    overrides: dict[str, Any] = field(default_factory=dict)  # added to the grid's overrides
    data: dict[str, str] = field(default_factory=dict)  # added to the grid's data paths
    axes: dict[str, list] | None = None  # replace the grid's axes at this scale
    zip: list[dict[str, list]] | None = None  # replace the grid's zipped axes at this scale
    tasks: list[str] | None = None  # replace the grid's tasks at this scale (real benchmarks, say)
    steps_factor: float | None = None  # multiply every stage's steps and warmup of the base (at least 2 and 1)
    seeds: list[int] | None = None  # replace the grid's training seeds at this scale
    shots: list[int] | None = None  # ... its numbers of demonstrations
    ablations: list[str] | None = None  # ... its few-shot demo controls
    trials: int | None = None  # ... its demo redraws
    eval_limit: int | None = None  # ... its examples per task


@dataclass
class GridSpec:
    question: str  # the one question the grid answers
    base: str  # run config the cells start from (relative to the grid file)
    mirrors: str = ""  # the paper's table or figure it mirrors, if any
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, for every cell
    axes: dict[str, list] = field(default_factory=dict)  # dotted key -> values (cartesian product)
    zip: list[dict[str, list]] = field(default_factory=list)  # groups of keys whose values change together
    seeds: list[int] = field(default_factory=lambda: [0])  # training seeds
    tasks: list[str] = field(default_factory=list)  # evaluation tasks
    optional_tasks: list[str] = field(default_factory=list)  # evaluated only when their data path exists
    shots: list[int] = field(default_factory=lambda: [0])
    ablations: list[str] = field(default_factory=lambda: ["none"])
    trials: int = 1
    eval_limit: int | None = None
    data: dict[str, str] = field(default_factory=dict)  # task -> dataset path
    scales: dict[str, ScaleConfig] = field(default_factory=dict)  # named variants (e.g. paper-scale)
    compare: list[list[str]] = field(default_factory=list)  # pairs of arms, e.g. [name=mllm, name=llm]


@dataclass
class Cell:
    id: str  # hash of the resolved run config
    arm: str  # hash without the seed: cells of one arm differ only in their seed
    seed: int
    overrides: dict[str, Any]  # the dotted keys this cell sets (axes and seed)
    config: RunConfig

    @property
    def label(self) -> str:
        """The arm in words: its axis values without the seed; a list or mapping value shows as a short hash."""

        def show(v: Any) -> str:
            return str(v) if not isinstance(v, (list, dict)) else f"<{type(v).__name__} {_hash(v)[:6]}>"

        return ", ".join(f"{k}={show(v)}" for k, v in self.overrides.items() if k != "seed") or "base"


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        parts = str(key).split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Grid:
    path: Path
    name: str
    spec: GridSpec
    scale: str

    def eval_tasks(self) -> list[str]:
        """The tasks to evaluate: all of `tasks`, and the optional ones whose data path exists."""
        from toolkit.eval.tasks import TASKS

        optional = [t for t in self.spec.optional_tasks if Path(self.data.get(t, TASKS.get(t).source)).exists()]
        tasks = self.spec.tasks if self._scale().tasks is None else self._scale().tasks
        return [t for t in tasks if t not in optional] + optional

    @property
    def data(self) -> dict[str, str]:
        return {**self.spec.data, **(self.spec.scales[self.scale].data if self.scale in self.spec.scales else {})}

    def base_dict(self) -> dict[str, Any]:
        spec, base, overrides = self.spec, self.spec.base, dict(self.spec.overrides)
        if self.scale != "tiny":
            if self.scale not in spec.scales:
                raise ConfigError(f"{self.path}: no scale '{self.scale}'; available: tiny, {', '.join(spec.scales)}")
            scale = spec.scales[self.scale]
            base = scale.base or base
            overrides = {**overrides, **scale.overrides}
        base_path = (self.path.parent / base).resolve()
        resolved = read_run_yaml(base_path)
        factor = self._scale().steps_factor
        if factor is not None:  # a smaller (or larger) budget for every stage of the base
            for i, stage in enumerate(resolved.get("stages", [])):
                overrides.setdefault(f"stages.{i}.steps", max(2, round(stage.get("steps", 1000) * factor)))
                overrides.setdefault(f"stages.{i}.warmup", max(1, round(stage.get("warmup", 375) * factor)))
        return deep_update(resolved, _nested(overrides))

    def _scale(self) -> ScaleConfig:
        return self.spec.scales.get(self.scale, ScaleConfig()) if self.scale != "tiny" else ScaleConfig()

    def cells(self) -> list[Cell]:
        spec, scale = self.spec, self._scale()
        axes = spec.axes if scale.axes is None else scale.axes
        zipped = spec.zip if scale.zip is None else scale.zip
        for group in zipped:
            lengths = {k: len(v) for k, v in group.items()}
            if len(set(lengths.values())) > 1:
                raise ConfigError(f"{self.path}: zipped keys need equally many values, got {lengths}")
        dims: list[list[dict[str, Any]]] = [[{k: v} for v in values] for k, values in axes.items()]
        for group in zipped:
            n = len(next(iter(group.values())))
            dims.append([{k: group[k][i] for k in group} for i in range(n)])
        base = self.base_dict()
        out, worlds = [], {}
        for combo in itertools.product(*dims) if dims else [()]:
            arm_overrides: dict[str, Any] = {}
            for part in combo:
                arm_overrides.update(part)
            for seed in spec.seeds:
                overrides = {**arm_overrides, "seed": seed}
                cfg = run_config_from_dict(deep_update(base, _nested(overrides)))
                resolved = identity_dict(cfg, worlds)
                arm = _hash({k: v for k, v in resolved.items() if k != "seed"})
                out.append(Cell(_hash(resolved), arm, seed, overrides, cfg))
        ids = [c.id for c in out]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{self.path}: two cells resolve to the same run config; check the axes")
        return out


def identity_dict(cfg: RunConfig, worlds: dict | None = None) -> dict[str, Any]:
    """What a run's results depend on: its resolved config with the world's location and the settings
    it is built from replaced by the world's identity (toolkit.world.build.world_identity: its seed and
    full config, so a world named by other overrides that build the same world is the same), the
    tower-pretraining settings only when a tower is pretrained (and then not where it is kept), and the
    version of the rule that orders the data streams. Cell ids and training keys hash it. `worlds`
    memoises identities across the cells of a grid (one world.json read per world, not per cell)."""
    d = to_dict(cfg)
    data = cfg.data
    key = json.dumps([data.world, data.world_preset, data.world_seed, data.world_overrides], sort_keys=True)
    worlds = {} if worlds is None else worlds
    if key not in worlds:
        worlds[key] = world_identity(data.world, data.world_preset, data.world_seed, data.world_overrides)
    d["data"]["world"] = worlds[key]
    for setting in ("world_preset", "world_seed", "world_overrides"):  # in the identity (seed and full config)
        d["data"].pop(setting, None)
    if cfg.model.vision.pretrain.steps:  # the tower is a function of the settings here, wherever it is kept
        d["model"]["vision"]["path"] = "pretrained"
    else:  # no tower pretraining: its settings have no effect
        d["model"]["vision"].pop("pretrain")
    d["data_order"] = ORDER_VERSION
    return d


def select_arm(cells: list[Cell], selector: str) -> str:
    """The label of the one arm whose overrides match every `key=value` in `selector` (comma-separated)."""
    wanted = {}
    for part in selector.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ConfigError(f"arm selector '{selector}': expected key=value[,key=value]")
        wanted[key] = value
    labels = sorted({c.label for c in cells if all(str(c.overrides.get(k)) == v for k, v in wanted.items())})
    if len(labels) != 1:
        raise ConfigError(
            f"arm selector '{selector}' matches {len(labels)} arms ({'; '.join(labels) or 'none'}); it must match one"
        )
    return labels[0]


def load_grid(path: str | os.PathLike, scale: str = "tiny") -> Grid:
    """Read and validate a grid file; unknown keys are errors naming the key."""
    path = Path(path)
    data = read_yaml(path)
    if isinstance(data, dict) and "pairs" in data:
        raise ConfigError(
            f"{path}: a grid of real model pairs (`pairs:`), which trains nothing; `xmt grid plan|run|table` read it"
        )
    spec = from_dict(GridSpec, data, prefix="grid")
    for i, pair in enumerate(spec.compare):
        if len(pair) != 2:
            raise ConfigError(
                f"{path}: compare entry {i} has {len(pair)} items {pair}; expected [arm A, arm B] (a selector "
                'with several keys holds commas: quote it, "name=mllm,model.decoder.dim=64")'
            )
    if scale != "tiny":
        if scale not in spec.scales:
            raise ConfigError(f"{path}: no scale '{scale}'; available: tiny, {', '.join(spec.scales)}")
        chosen = spec.scales[scale]
        settings = ("seeds", "shots", "ablations", "trials", "eval_limit")
        spec = dataclasses.replace(spec, **{k: getattr(chosen, k) for k in settings if getattr(chosen, k) is not None})
    if not spec.seeds or spec.trials < 1 or (spec.eval_limit is not None and spec.eval_limit < 1):
        raise ConfigError(
            f"{path} (scale {scale}): seeds={spec.seeds}, trials={spec.trials}, eval_limit={spec.eval_limit}; "
            "valid: at least one seed, trials >= 1, eval_limit >= 1 (or none)"
        )
    return Grid(path, path.name.removesuffix(".yaml").removesuffix(".yml"), spec, scale)
