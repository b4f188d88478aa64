"""The training loop: `run_training(cfg, run_dir)` trains every stage of a run, resumable at any
checkpoint. One flat `while` per stage; per step: take one batch per stream (per micro-step), forward
and backward each, clip, step, log, checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_model as st_load_model

from toolkit.config import ConfigError, to_dict
from toolkit.data.images import CLIP_MEAN, CLIP_STD, ImageTransform
from toolkit.data.mixture import Mixture
from toolkit.data.tokenizer import load_tokenizer
from toolkit.model.build import WEIGHTS_FILE, build_model
from toolkit.train import checkpoint as ckpt
from toolkit.train.config import RunConfig, run_config_from_dict
from toolkit.train.distributed import (
    DistInfo,
    all_gather_lists,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown,
    wrap_model,
)
from toolkit.train.metrics import MetricLogger
from toolkit.train.optim import build_optimizer, lr_at
from toolkit.train.precision import resolve_precision

CONFIG_FILE = "config.yaml"


class TrainingError(RuntimeError):
    """The run stopped (non-finite loss, interrupt); the message says where and what is kept."""


class TrainingInterrupted(TrainingError):
    pass


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def environment(info: DistInfo) -> dict:
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


def ensure_world(cfg: RunConfig, info: DistInfo) -> None:
    """Build the world the run reads when its directory does not exist yet (main process only)."""
    world = cfg.data.world
    if world and not Path(world, "manifest.json").is_file() and info.is_main:
        from toolkit.world.build import build_world
        from toolkit.world.config import world_config

        print(f"world {world} not found: building preset '{cfg.data.world_preset}' (seed {cfg.data.world_seed})")
        wcfg = world_config(cfg.data.world_preset, cfg.data.world_overrides or None)
        try:
            build_world(wcfg, world, seed=cfg.data.world_seed, progress=False)
        except FileExistsError:  # a parallel run built it meanwhile
            pass
    barrier(info)  # every process passes here once, whether or not the world had to be built


def resolve_model(cfg: RunConfig, tokenizer) -> RunConfig:
    """The model takes the tokenizer's special ids; its vocabulary must hold the tokenizer's."""
    if tokenizer.vocab_size > cfg.model.decoder.vocab_size:
        raise ConfigError(
            f"model.decoder.vocab_size={cfg.model.decoder.vocab_size} is smaller than the tokenizer's "
            f"{tokenizer.vocab_size} tokens ({tokenizer.source})"
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, tokens=tokenizer.special))


def image_transform(cfg: RunConfig) -> ImageTransform | None:
    vision = cfg.model.vision
    if not vision.enabled:
        return None
    if vision.kind == "clip":
        return ImageTransform(vision.image_size, CLIP_MEAN, CLIP_STD)
    return ImageTransform(vision.image_size)


def prepare_run_dir(cfg: RunConfig, run_dir: Path, info: DistInfo) -> None:
    """A new run: the directory must be new or empty; the resolved config is written first."""
    occupied = run_dir.exists() and any(run_dir.iterdir())
    barrier(info)  # every process has looked before the main one writes (else a slow rank sees its files)
    if occupied:
        raise ConfigError(f"{run_dir} exists and is not empty; continue it with: xmt train --resume {run_dir}")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(run_dir / CONFIG_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
        _write_atomic(run_dir / "env.json", json.dumps(environment(info), indent=2) + "\n")
    barrier(info)


def load_run(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no {CONFIG_FILE}; not a run directory written by xmt train")
    return run_config_from_dict(yaml.safe_load(path.read_text()))


def batch_digests(b) -> list[bytes]:
    """One digest per sequence of a batch (its tokens and loss mask, padding left out) and one per
    image: what a step trained on, independent of how it was split into micro-batches or processes."""
    ids, keep = b.input_ids.cpu(), b.attention_mask.cpu()
    loss = None if b.loss_mask is None else b.loss_mask.cpu()
    out = []
    for r in range(ids.shape[0]):
        h = hashlib.sha1(ids[r][keep[r]].numpy().tobytes())
        if loss is not None:
            h.update(loss[r][keep[r]].numpy().tobytes())
        out.append(b"s" + h.digest())
    if b.images is not None:
        out += [b"i" + hashlib.sha1(img.numpy().tobytes()).digest() for img in b.images.detach().cpu().contiguous()]
    return out


def step_hash(digests: list[bytes]) -> str:
    """The hash of a step's data of one stream: its sequence and image digests as a multiset."""
    return hashlib.sha1(b"".join(sorted(digests))).hexdigest()[:16]


def run_training(cfg: RunConfig, run_dir: str | os.PathLike, resume: bool = False) -> dict:
    """Train all stages of `cfg` into `run_dir` (or continue it with resume=True); returns a summary."""
    run_dir = Path(run_dir)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, run_dir, resume, info)
    finally:
        shutdown(info)


def _train(cfg: RunConfig, run_dir: Path, resume: bool, info: DistInfo) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for i in range(len(cfg.stages)):
        cfg.stage_streams(i)  # fail early on stages without streams
    for s in cfg.data.streams + [s for st in cfg.stages for s in (st.streams or [])]:
        if s.batch_size % info.world_size:
            raise ConfigError(
                f"stream '{s.name}': batch_size={s.batch_size} is not divisible by {info.world_size} processes"
            )
    ensure_world(cfg, info)
    tokenizer = load_tokenizer(cfg.resolve(cfg.data.tokenizer), special_strings=cfg.data.special_tokens)
    cfg = resolve_model(cfg, tokenizer)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, info.device))
    if not resume:
        prepare_run_dir(cfg, run_dir, info)

    torch.manual_seed(cfg.seed)
    with torch.device(info.device):
        model = build_model(cfg.model, seed=cfg.seed)
    state = {"step": 0, "stage": 0, "stage_step": 0, "data": None}
    checkpoint = ckpt.latest_checkpoint(run_dir) if resume else None
    trainer_state = None
    if checkpoint is not None:
        missing, unexpected = st_load_model(
            model, str(checkpoint / WEIGHTS_FILE), strict=False, device=str(info.device)
        )
        if missing or unexpected:
            raise TrainingError(f"{checkpoint}: weights do not match the run's model ({missing[:3]} {unexpected[:3]})")
        state = ckpt.read_state(checkpoint)
        trainer_state = ckpt.load_trainer_state(checkpoint)
        ckpt.set_rng_state(trainer_state["rng"])
    streams_per_step = max(len(cfg.stage_streams(i)) for i in range(len(cfg.stages)))
    net = wrap_model(
        model, info, cfg.distributed.strategy, find_unused=streams_per_step > 1 or cfg.optim.grad_accum > 1
    )
    logger = MetricLogger(
        run_dir, info.is_main, cfg.logging.tensorboard, cfg.logging.progress, cfg.total_steps, state["step"]
    )
    if resume:
        logger.truncate_after(state["step"])
    transform = image_transform(cfg)
    autocast = (
        torch.autocast(info.device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()
    )
    optimizer = None
    last_saved = checkpoint
    stop = _StopRequest()
    try:
        for stage_index in range(state["stage"], len(cfg.stages)):
            stage = cfg.stages[stage_index]
            if state["stage_step"] >= stage.steps:  # this checkpoint closed the stage
                state.update(stage=stage_index + 1, stage_step=0)
                continue
            per_rank = [
                dataclasses.replace(s, batch_size=s.batch_size // info.world_size)
                for s in cfg.stage_streams(stage_index)
            ]
            mixture = Mixture(
                per_rank, tokenizer, model.num_image_tokens, cfg.data.max_len, transform,
                seed=cfg.seed, rank=info.rank, world_size=info.world_size, max_images=cfg.data.max_images,
                prompt_template=cfg.data.prompt_template,
            )  # fmt: skip
            if state["data"]:  # streams continue where the previous stage (or the checkpoint) left them
                try:
                    mixture.continue_streams(state["data"])
                except ValueError as e:
                    raise TrainingError(f"{last_saved}: {e}") from None
            if optimizer is None or stage.reset_optimizer:
                optimizer = build_optimizer(model, cfg.optim, stage)
            if trainer_state is not None and (state["stage_step"] > 0 or not stage.reset_optimizer):
                optimizer.load_state_dict(trainer_state["optimizer"])
            trainer_state = None
            while state["stage_step"] < stage.steps:
                step = state["step"] + 1
                if step == cfg.faults.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)
                lr = lr_at(stage, state["stage_step"])
                for group in optimizer.param_groups:
                    group["lr"] = lr
                started = time.perf_counter()
                metrics = _train_step(net, model, mixture, optimizer, cfg, info, autocast, step, last_saved)
                state.update(step=step, stage_step=state["stage_step"] + 1, data=mixture.state_dict())
                elapsed = time.perf_counter() - started
                tokens_per_s = metrics.pop("tokens") / elapsed
                if step % cfg.logging.every == 0 or state["stage_step"] == stage.steps:
                    logger.log(
                        {"step": step, "stage": stage.name, "lr": lr, "tokens_per_s": round(tokens_per_s, 1), **metrics}
                    )
                logger.advance(metrics["loss"], tokens_per_s)
                evaluate_now = cfg.eval.every > 0 and step % cfg.eval.every == 0
                if (
                    step % cfg.checkpoint.every == 0
                    or state["stage_step"] == stage.steps
                    or stop.requested
                    or evaluate_now
                ):
                    last_saved = _save(run_dir, model, optimizer, state, cfg, info)
                if evaluate_now:
                    _evaluate(cfg, run_dir, last_saved, step, info)
                if stop.requested:
                    raise TrainingInterrupted(
                        f"interrupted after step {step}; saved {last_saved}; continue with --resume"
                    )
            state.update(stage=stage_index + 1, stage_step=0)
    finally:
        stop.restore()
        logger.close()
    return {"run_dir": str(run_dir), "steps": state["step"], "checkpoint": str(last_saved)}


def _evaluate(cfg: RunConfig, run_dir: Path, checkpoint: Path, step: int, info: DistInfo) -> None:
    """Evaluation during training, on the checkpoint just written (main process; the others wait)."""
    if info.is_main and cfg.eval.tasks:
        from toolkit.eval.runner import evaluate

        evaluate(checkpoint, cfg.eval.tasks, cfg.eval.shots, limit=cfg.eval.limit, out=run_dir / "eval" / f"step-{step:07d}",
                 device=str(info.device), echo=lambda s: None)  # fmt: skip
    barrier(info)


class _StopRequest:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step, with a checkpoint; a second
    Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _save(run_dir: Path, model, optimizer, state: dict, cfg: RunConfig, info: DistInfo) -> Path:
    path = run_dir / "checkpoints" / f"step-{state['step']:07d}"
    if info.is_main:
        path = ckpt.save_checkpoint(run_dir, model, optimizer, state, cfg.checkpoint.keep)
    barrier(info)
    return path


def _train_step(
    net, model, mixture, optimizer, cfg: RunConfig, info: DistInfo, autocast, step: int, last_saved
) -> dict:
    """One optimizer step over `grad_accum` micro-batches. With `optim.loss_weighting: tokens` the step
    minimises one mean over every target token (all streams, all processes); with `streams` each
    stream's loss is its own token mean and the step minimises their sum. The logged per-stream
    losses are token means either way, and `loss` is their sum."""
    optimizer.zero_grad(set_to_none=True)
    accum = cfg.optim.grad_accum
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    digests: dict[str, list[bytes]] = {}
    tokens = 0
    for micro in range(accum):
        batches = mixture.next_batch()
        names = list(batches)
        step_tokens = None
        if cfg.optim.loss_weighting == "tokens":  # one mean over every target token of the micro-batch
            local = sum(model.loss_targets(b.input_ids, b.attention_mask, b.loss_mask).sum() for b in batches.values())
            step_tokens = all_reduce_sum(torch.as_tensor(local, dtype=torch.float32, device=info.device), info).clamp(
                min=1
            )
        for i, name in enumerate(names):
            b = batches[name]
            last = micro == accum - 1 and i == len(names) - 1
            sync = contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
            with sync:
                with autocast:
                    out = net(
                        b.input_ids.to(info.device),
                        None if b.images is None else b.images.to(info.device),
                        b.attention_mask.to(info.device),
                        None if b.loss_mask is None else b.loss_mask.to(info.device),
                        return_logits=False,  # the loss fused with the output layer
                    )
                count = (
                    step_tokens
                    if step_tokens is not None
                    else all_reduce_sum(out.num_loss_tokens.detach().float(), info).clamp(min=1)
                )
                total = out.loss.float() * out.num_loss_tokens  # this process's summed NLL
                loss = total / count * info.world_size / accum  # DDP averages gradients over processes
                if step == cfg.faults.nan_at_step:
                    loss = loss * float("nan")
                if not torch.isfinite(loss):
                    kept = (
                        f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written yet"
                    )
                    raise TrainingError(f"non-finite loss at step {step} in stream '{name}'; {kept}")
                loss.backward()
            sums[name] = sums.get(name, 0.0) + total.detach()
            counts[name] = counts.get(name, 0.0) + out.num_loss_tokens.detach().float()
            digests.setdefault(name, []).extend(batch_digests(b))
            tokens += int(b.attention_mask.sum())
    grad_norm = torch.nn.utils.clip_grad_norm_(
        model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    )
    optimizer.step()
    metrics: dict = {}
    # Every micro-batch of every process: equal hashes in two runs mean the same data at that step.
    gathered: dict[str, list[bytes]] = {}
    for name, digest in all_gather_lists([(n, d) for n, ds in digests.items() for d in ds], info):
        gathered.setdefault(name, []).append(digest)
    for name in sums:
        metrics[f"loss/{name}"] = float(
            all_reduce_sum(sums[name], info) / all_reduce_sum(counts[name], info).clamp(min=1)
        )
        metrics[f"batch/{name}"] = step_hash(gathered[name])
    metrics["loss"] = sum(v for k, v in metrics.items() if k.startswith("loss/"))
    metrics["grad_norm"] = float(grad_norm)
    metrics["tokens"] = tokens * info.world_size
    return metrics
