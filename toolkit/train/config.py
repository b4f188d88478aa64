"""The run configuration: model, data, optimizer, stages, checkpointing, logging, distributed.

Precedence: dataclass defaults < the model preset < the YAML file < `key.sub=value` overrides.
`model_preset` names the base model config; the file's `model:` block overrides fields of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.config import ConfigError, deep_update, from_dict, parse_overrides, read_yaml, to_dict
from toolkit.data.mixture import StreamConfig
from toolkit.model.config import ModelConfig
from toolkit.model.presets import preset_config
from toolkit.train.precision import PRECISIONS

IMAGE_KINDS = ("pairs", "interleaved")  # stream kinds a text-only model cannot read


@dataclass
class DataConfig:
    world: str | None = None  # world directory; "{world}" in stream paths and tokenizer is replaced by it
    world_preset: str = "tiny"  # when `world` does not exist yet, it is built with this preset ...
    world_seed: int = 0  # ... and this world seed (recorded separately from the training seed)
    world_overrides: dict[str, Any] = field(default_factory=dict)  # ... and these WorldConfig fields
    tokenizer: str = "{world}/tokenizer.json"  # tokenizer.json (or a directory holding one)
    # token strings that play xmt's special roles in a tokenizer from elsewhere, e.g. {image_pad: ...}
    special_tokens: dict[str, str] = field(default_factory=dict)
    streams: list[StreamConfig] = field(default_factory=list)  # batch_size is global (split over ranks)
    max_len: int = 128  # tokens per sequence
    max_images: int = 5  # images per interleaved sequence (the paper keeps at most 5)
    prompt_template: str = "{instruction}\n{input}"  # instruction prompt (masked from the loss)

    def __post_init__(self) -> None:
        if self.max_len < 2 or self.max_images < 1:
            raise ConfigError(f"data.max_len={self.max_len}, data.max_images={self.max_images}: valid: >= 2, >= 1")


@dataclass
class OptimConfig:
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW (paper)
    eps: float = 1e-6
    weight_decay: float = 0.01  # not applied to biases and norm weights
    grad_clip: float = 2.0  # max global grad norm (0 = off; Kosmos-2's script uses 2.0)
    grad_accum: int = 1  # micro-batches per optimizer step
    # tokens: one mean over every target token of the step (one loss over the whole mixed batch) |
    # streams: the sum of per-stream token means. On the tiny world, summing stream means left the
    # MLLM's text loss at 0.62 after 1500 steps against 0.30 for the LLM arm; one token mean gave 0.30.
    loss_weighting: str = "tokens"
    # tokens weighting: streams of a micro-step whose sequences are about as long run as one batch, in
    # one forward and backward (the same loss and gradient; each pass has a fixed cost that dominates
    # tiny steps: benchmarks/step_profile.py). Each stream keeps its own logged loss.
    merge_streams: bool = True

    def __post_init__(self) -> None:
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)}: expected two numbers in [0, 1)")
        if self.eps <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.grad_accum < 1:
            raise ConfigError(
                f"optim: eps={self.eps}, weight_decay={self.weight_decay}, grad_clip={self.grad_clip}, "
                f"grad_accum={self.grad_accum}; valid: eps > 0, weight_decay >= 0, grad_clip >= 0, grad_accum >= 1"
            )
        if self.loss_weighting not in ("streams", "tokens"):
            raise ConfigError(f"optim.loss_weighting: unknown value '{self.loss_weighting}'; valid: streams, tokens")


@dataclass
class StageConfig:
    name: str = "pretrain"
    steps: int = 1000  # optimizer steps in this stage
    lr: float = 2e-4  # peak learning rate
    warmup: int = 375  # linear warmup steps
    schedule: str = "linear"  # linear (decay to min_lr, the paper) | cosine | constant
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    streams: list[StreamConfig] | None = None  # this stage's mixture (None: data.streams); streams
    # with the same name as in the previous stage continue where they were
    reset_optimizer: bool = True  # fresh AdamW moments at the start of the stage

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "cosine", "constant"):
            raise ConfigError(f"stages.schedule: unknown value '{self.schedule}'; valid: linear, cosine, constant")
        if self.steps < 1:
            raise ConfigError(f"stage '{self.name}': steps must be >= 1, got {self.steps}")
        if self.lr <= 0 or self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(
                f"stage '{self.name}': lr={self.lr}, warmup={self.warmup}, min_lr_ratio={self.min_lr_ratio}; "
                "valid: lr > 0, warmup >= 0, min_lr_ratio in [0, 1]"
            )


@dataclass
class CheckpointConfig:
    every: int = 200  # save every N optimizer steps (and at the end of each stage)
    keep: int = 2  # keep the last k checkpoints (0: all)

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep < 0:
            raise ConfigError(
                f"checkpoint.every={self.every}, checkpoint.keep={self.keep}; valid: every >= 1, keep >= 0"
            )


@dataclass
class LoggingConfig:
    every: int = 10  # write metrics every N steps

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"logging.every={self.every}: must be >= 1")

    tensorboard: bool = True  # also write TensorBoard events (when tensorboard is installed)
    progress: bool = True  # progress bar with loss, tokens/s and ETA


@dataclass
class EvalDuringTrainingConfig:
    every: int = 0  # evaluate every N steps (0 = never); a checkpoint is saved at those steps
    tasks: list[str] = field(default_factory=list)  # task names (see `xmt eval --help`)
    limit: int | None = None  # examples per task
    shots: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"eval.every={self.every}: must be >= 0 (0: never)")


@dataclass
class DistributedConfig:
    strategy: str = "ddp"  # ddp (gloo on CPU, NCCL on CUDA) | fsdp (FSDP2 fully_shard, CUDA only)

    def __post_init__(self) -> None:
        if self.strategy not in ("ddp", "fsdp"):
            raise ConfigError(f"distributed.strategy: unknown value '{self.strategy}'; valid: ddp, fsdp")


@dataclass
class RunConfig:
    name: str = "run"
    seed: int = 0  # training seed: model init, dropout and data order (the world seed is data.world_seed)
    model_preset: str = "tiny"  # base of `model` (see toolkit.model.presets)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    # auto: bf16 autocast on CUDA and on CPUs with native bf16 matrix products (AVX512-BF16/AMX),
    # else fp32; written resolved into the run's config.yaml | fp32 | bf16
    precision: str = "auto"
    device: str = "auto"  # auto (cuda when available) | cpu | cuda
    threads: int = 0  # torch CPU threads (0 = torch's default)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    eval: EvalDuringTrainingConfig = field(default_factory=EvalDuringTrainingConfig)  # results in eval/step-N/

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: unknown value '{self.precision}'; valid: {', '.join(PRECISIONS)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: unknown value '{self.device}'; valid: auto, cpu, cuda")
        if not self.stages:
            raise ConfigError("stages: a run needs at least one stage")
        if not 0 <= self.seed < 2**32 or not 0 <= self.data.world_seed < 2**32:
            raise ConfigError(f"seed={self.seed}, data.world_seed={self.data.world_seed}: valid: 0 .. 2**32 - 1")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}: valid: 0 (torch's default) or more")

    @property
    def text_only(self) -> bool:
        """The LLM baseline arm: no vision modules, so image streams are left out."""
        return not self.model.vision.enabled

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_streams(self, index: int) -> list[StreamConfig]:
        """The streams stage `index` trains on, with paths resolved and image streams dropped for the LLM arm."""
        streams = self.stages[index].streams
        streams = self.data.streams if streams is None else streams
        if not streams:
            raise ConfigError(f"stage '{self.stages[index].name}' has no data streams (data.streams is empty)")
        out = []
        for s in streams:
            if self.text_only and s.kind in IMAGE_KINDS:
                continue
            out.append(StreamConfig(s.name, s.kind, [self.resolve(p) for p in s.paths], s.batch_size))
        return out

    def resolve(self, path: str) -> str:
        if "{world}" in path:
            if not self.data.world:
                raise ConfigError(f"path '{path}' uses {{world}} but data.world is not set")
            return path.replace("{world}", self.data.world)
        return path


def run_config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a raw mapping into a RunConfig, expanding `model_preset` under the `model:` block."""
    if not isinstance(data, dict):
        raise ConfigError(f"run config: expected a mapping, got {type(data).__name__}")
    preset = data.get("model_preset", "tiny")
    if not isinstance(preset, str):
        raise ConfigError(f"model_preset: expected a string, got {preset!r}")
    model = data.get("model", {}) or {}
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a mapping, got {model!r}")
    data = {**data, "model": deep_update(to_dict(preset_config(preset)), model)}
    return from_dict(RunConfig, data)


def read_run_yaml(path: str | os.PathLike, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A run YAML with its `base:` chain applied (a path relative to the file; the file wins)."""
    path = Path(path).resolve()
    if str(path) in seen:
        raise ConfigError(f"{path}: `base` chain loops back to itself")
    data = read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base: expected a path, got {base!r}")
    return deep_update(read_run_yaml(path.parent / base, (*seen, str(path))), data)


def load_run_config(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """defaults < model preset < YAML (with its `base:` chain) < `key.sub=value` overrides."""
    data = read_run_yaml(path) if path is not None else {}
    return run_config_from_dict(deep_update(data, parse_overrides(overrides)))
