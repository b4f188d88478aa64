"""The training loop: `run_training(cfg, run_dir)` trains every stage of a run, resumable at any
checkpoint.

`setup` builds the model and the train state (from the last checkpoint when resuming); each stage is
one flat `while` over its steps; `train_step` takes one batch per stream per micro-step, runs forward
and backward on each, clips and steps. The caller builds the world the run reads and hands in the
evaluation to run during training (`evaluate`), so the trainer depends on neither.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model as st_load_model

from toolkit.config import ConfigError, to_dict
from toolkit.data.format import Batch
from toolkit.data.mixture import Mixture
from toolkit.data.tokenizer import Tokenizer, load_tokenizer
from toolkit.files import is_partial, write_atomic
from toolkit.model.build import WEIGHTS_FILE, build_model
from toolkit.train import checkpoint as ckpt
from toolkit.train.config import RunConfig, StageConfig
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
from toolkit.train.resume import check_resume
from toolkit.train.rundir import SKIPPED_FILE, image_transform, prepare_run_dir

Evaluate = Callable[[Path, int, str], None]  # (checkpoint just written, step, device): evaluation during training
BeforeStep = Callable[[int, torch.nn.Module], None]  # (step about to run, model): a test's fault hook


class TrainingError(RuntimeError):
    """The run stopped (non-finite loss, interrupt); the message says where and what is kept."""


class TrainingInterrupted(TrainingError):
    """Stopped on request (Ctrl-C, stop_when) after `step`, saved at `checkpoint`."""

    def __init__(self, message: str, step: int | None = None, checkpoint: Path | None = None) -> None:
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainState:
    """Where a run is: saved with every checkpoint (`state.json`) and restored on resume."""

    step: int = 0  # optimizer steps taken (all stages)
    stage: int = 0  # the stage being trained
    stage_step: int = 0  # steps taken in that stage
    data: dict | None = None  # the mixture's state: each stream's position
    last_checkpoint: Path | None = None  # not saved: found again on resume

    def state_dict(self) -> dict:
        return {"step": self.step, "stage": self.stage, "stage_step": self.stage_step, "data": self.data}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.stage, self.stage_step, self.data = (state[k] for k in ("step", "stage", "stage_step", "data"))


@dataclass
class Run:
    """What setup builds once and every stage uses."""

    cfg: RunConfig
    run_dir: Path
    info: DistInfo
    tokenizer: Tokenizer
    model: torch.nn.Module
    net: torch.nn.Module  # the model as wrapped for several processes (DDP / FSDP), else the model
    logger: MetricLogger
    state: TrainState = field(default_factory=TrainState)
    optimizer: torch.optim.Optimizer | None = None
    saved: dict | None = None  # optimizer and RNG state of the checkpoint resumed from, until used
    skipped: dict = field(default_factory=dict)  # records skipped so far, per stream and reason (all processes)
    autocast: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)  # bf16 or none


def run_training(
    cfg: RunConfig,
    run_dir,
    resume: bool = False,
    evaluate: Evaluate | None = None,
    before_step: BeforeStep | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> dict:
    """Train all stages of `cfg` into `run_dir` (or continue it with resume=True); returns a summary.
    `evaluate(checkpoint, step, device)` runs on the main process at `cfg.eval.every` steps (see
    toolkit.eval.runner.evaluator); `before_step(step, model)` is a hook for tests that inject faults.
    Ctrl-C (SIGINT), or `stop_when()` turning true (a grid being stopped), ends the run after the
    current step with a checkpoint: TrainingInterrupted."""
    run_dir = Path(run_dir)
    existed = run_dir.exists()
    fresh = not resume and not (existed and any(not is_partial(p) for p in run_dir.iterdir()))
    info = init_distributed(cfg.device)
    try:
        run = setup(cfg, run_dir, resume, info, evaluate)
        stop = _StopRequest(stop_when)
        try:
            for index in range(run.state.stage, len(run.cfg.stages)):
                train_stage(run, index, stop, evaluate, before_step)
        finally:
            stop.restore()
            run.logger.close()
        summary = {
            "run_dir": str(run_dir),
            "steps": run.state.step,
            "checkpoint": str(run.state.last_checkpoint),
            "skipped": run.skipped,
        }
        # The DDP wrapper holds the process group: release it while every process is still here,
        # then close the group together (tearing a gloo reducer down after its group can hang).
        del run
        barrier(info)
        return summary
    except BaseException:
        if fresh and info.is_main and not ckpt.list_checkpoints(run_dir):
            discard(run_dir, keep_dir=existed)  # nothing to resume: leave no half-written run behind
        raise
    finally:
        shutdown(info)


def discard(run_dir: Path, keep_dir: bool) -> None:
    """Remove what a new run wrote (config, environment, metrics) when it failed before its first checkpoint."""
    if not run_dir.is_dir():
        return
    for path in run_dir.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if not keep_dir:
        run_dir.rmdir()


def check_config(cfg: RunConfig, info: DistInfo, evaluate: Evaluate | None) -> None:
    """What can be known wrong before any work: stages without streams, batches that do not split
    over the processes, evaluation asked for without an evaluator."""
    for i in range(len(cfg.stages)):
        cfg.stage_streams(i)
    for s in cfg.data.streams + [s for st in cfg.stages for s in (st.streams or [])]:
        if s.batch_size % info.world_size:
            raise ConfigError(
                f"stream '{s.name}': batch_size={s.batch_size} is not divisible by {info.world_size} processes"
            )
    if cfg.eval.every > 0 and cfg.eval.tasks and evaluate is None:
        raise ConfigError(
            f"eval.every={cfg.eval.every} asks for evaluation during training, but no evaluator was given "
            "(run_training(..., evaluate=toolkit.eval.runner.evaluator(cfg, run_dir)); xmt train passes it)"
        )


def resolve_model(cfg: RunConfig, tokenizer: Tokenizer) -> RunConfig:
    """The model takes the tokenizer's special ids; its vocabulary must hold the tokenizer's."""
    if tokenizer.vocab_size > cfg.model.decoder.vocab_size:
        raise ConfigError(
            f"model.decoder.vocab_size={cfg.model.decoder.vocab_size} is smaller than the tokenizer's "
            f"{tokenizer.vocab_size} tokens ({tokenizer.source})"
        )
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, tokens=tokenizer.special))


def setup(cfg: RunConfig, run_dir: Path, resume: bool, info: DistInfo, evaluate: Evaluate | None) -> Run:
    """Config checks, tokenizer, the run directory, the model (restored on resume), its wrapper, the logger."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    check_config(cfg, info, evaluate)
    tokenizer = load_tokenizer(cfg.resolve(cfg.data.tokenizer), special_strings=cfg.data.special_tokens)
    cfg = resolve_model(cfg, tokenizer)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, info.device))
    if not resume:
        prepare_run_dir(cfg, run_dir, info)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)  # the global generators too, so that a checkpoint's RNG state is the run's own
    np.random.seed(cfg.seed)
    with torch.device(info.device):
        model = build_model(cfg.model, seed=cfg.seed)
    state, saved, skipped = TrainState(), None, {}
    checkpoint = ckpt.latest_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None and ckpt.list_checkpoints(run_dir):
        newest = ckpt.list_checkpoints(run_dir)[-1]
        raise ckpt.CheckpointError(
            f"{run_dir}: no checkpoint of the run is complete (the newest, {newest.name}: {ckpt.verify(newest)}); "
            "nothing to resume from: train it again with --out"
        )
    changes = {}
    if checkpoint is not None:
        recorded = ckpt.read_state(checkpoint)
        changes = check_resume(recorded.get("config"), plain_config(cfg), recorded["stage"], recorded["stage_step"])
        missing, unexpected = st_load_model(
            model, str(checkpoint / WEIGHTS_FILE), strict=False, device=str(info.device)
        )
        if missing or unexpected:
            raise TrainingError(
                f"{checkpoint}: weights do not match the run's model "
                f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
            )
        state.load_state_dict(recorded)
        state.last_checkpoint = checkpoint
        skipped = recorded.get("skipped", {})
        saved = ckpt.load_trainer_state(checkpoint)
        ckpt.set_rng_state(saved["rng"])
    streams_per_step = max(len(cfg.stage_streams(i)) for i in range(len(cfg.stages)))
    find_unused = streams_per_step > 1 or cfg.optim.grad_accum > 1
    net = wrap_model(model, info, cfg.distributed.strategy, find_unused=find_unused)
    logger = MetricLogger(
        run_dir, info.is_main, cfg.logging.tensorboard, cfg.logging.progress, cfg.total_steps, state.step
    )
    if resume:
        logger.truncate_after(state.step)
    if changes:
        logger.log({"step": state.step, "event": "resumed with a changed config", "changes": changes})
    bf16 = cfg.precision == "bf16"
    autocast = torch.autocast(info.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    return Run(
        cfg, run_dir, info, tokenizer, model, net, logger, state, saved=saved, skipped=skipped, autocast=autocast
    )


def stage_mixture(run: Run, index: int) -> Mixture:
    """The stage's streams, each process reading its part; named streams continue where they were."""
    info = run.info
    per_rank = [
        dataclasses.replace(s, batch_size=s.batch_size // info.world_size) for s in run.cfg.stage_streams(index)
    ]
    mixture = Mixture(
        per_rank,
        run.tokenizer,
        run.model.num_image_tokens,
        run.cfg.data.max_len,
        image_transform(run.cfg),
        seed=run.cfg.seed,
        rank=info.rank,
        world_size=info.world_size,
        max_images=run.cfg.data.max_images,
        prompt_template=run.cfg.data.prompt_template,
    )
    if run.state.data:
        try:
            mixture.continue_streams(run.state.data)
        except ValueError as e:
            raise TrainingError(f"{run.state.last_checkpoint}: {e}") from None
    return mixture


def stage_optimizer(run: Run, stage: StageConfig) -> torch.optim.Optimizer:
    """The optimizer carries over between stages unless the stage resets it; a resumed run restores
    the checkpoint's state into it once."""
    if run.optimizer is None or stage.reset_optimizer:
        run.optimizer = build_optimizer(run.model, run.cfg.optim, stage)
    if run.saved is not None and (run.state.stage_step > 0 or not stage.reset_optimizer):
        run.optimizer.load_state_dict(run.saved["optimizer"])
    run.saved = None
    return run.optimizer


def train_stage(run: Run, index: int, stop, evaluate: Evaluate | None, before_step: BeforeStep | None) -> None:
    cfg, state, stage = run.cfg, run.state, run.cfg.stages[index]
    if state.stage_step < stage.steps:  # else the checkpoint resumed from closed this stage
        mixture = stage_mixture(run, index)
        optimizer = stage_optimizer(run, stage)
        before = run.skipped  # skipped in earlier stages and before a resume: this stage's mixture counts from 0
        while state.stage_step < stage.steps:
            step = state.step + 1
            if before_step is not None:
                before_step(step, run.model)
            lr = lr_at(stage, state.stage_step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            started = time.perf_counter()
            metrics = train_step(run, mixture, optimizer, step)
            state.step, state.stage_step, state.data = step, state.stage_step + 1, mixture.state_dict()
            tokens_per_s = metrics.pop("tokens") / (time.perf_counter() - started)
            log_now = step % cfg.logging.every == 0 or state.stage_step == stage.steps
            evaluate_now = evaluate is not None and cfg.eval.every > 0 and step % cfg.eval.every == 0
            stopping = stop.requested  # read once: the step that saves is the step that stops
            save_now = step % cfg.checkpoint.every == 0 or state.stage_step == stage.steps or stopping
            if log_now or save_now or evaluate_now:
                run.skipped = gather_skipped(mixture, run.info, before)
            if log_now:
                counts = {
                    f"skipped/{name}/{reason}": entry["count"]
                    for name, reasons in run.skipped.items()
                    for reason, entry in reasons.items()
                }
                run.logger.log(
                    {
                        "step": step,
                        "stage": stage.name,
                        "lr": lr,
                        "tokens_per_s": round(tokens_per_s, 1),
                        **metrics,
                        **counts,
                    }
                )
            run.logger.advance(metrics["loss"], tokens_per_s)
            if save_now or evaluate_now:
                save(run)
            if evaluate_now:
                if run.info.is_main:
                    evaluate(state.last_checkpoint, step, str(run.info.device))
                barrier(run.info)
            if stopping:
                raise TrainingInterrupted(
                    f"interrupted after step {step}; saved {state.last_checkpoint}; continue with --resume",
                    step,
                    state.last_checkpoint,
                )
    state.stage, state.stage_step = index + 1, 0


def plain_config(cfg: RunConfig) -> dict:
    """The resolved config as JSON reads it back (tuples as lists), as checkpoints record it."""
    return json.loads(json.dumps(to_dict(cfg)))


def gather_skipped(mixture: Mixture, info: DistInfo, before: dict) -> dict[str, dict[str, dict]]:
    """Records skipped so far, per stream and reason ({count, first}): `before` (earlier stages, the
    run before a resume) and what every process's mixture has skipped since."""
    total = {name: {reason: dict(entry) for reason, entry in reasons.items()} for name, reasons in before.items()}
    for part in all_gather_lists([mixture.skipped()], info):
        for name, reasons in part.items():
            for reason, entry in reasons.items():
                seen = total.setdefault(name, {}).setdefault(reason, {"count": 0, "first": entry["first"]})
                seen["count"] += entry["count"]
    return total


def save(run: Run) -> None:
    path = run.run_dir / "checkpoints" / f"step-{run.state.step:07d}"
    if run.info.is_main and run.skipped:
        write_atomic(run.run_dir / SKIPPED_FILE, json.dumps(run.skipped, indent=1, sort_keys=True) + "\n")
    if run.info.is_main:
        state = {**run.state.state_dict(), "config": plain_config(run.cfg), "skipped": run.skipped}
        path = ckpt.save_checkpoint(run.run_dir, run.model, run.optimizer, state, run.cfg.checkpoint.keep)
    barrier(run.info)
    run.state.last_checkpoint = path


def train_step(run: Run, mixture: Mixture, optimizer: torch.optim.Optimizer, step: int) -> dict:
    """One optimizer step over `grad_accum` micro-batches. With `optim.loss_weighting: tokens` the step
    minimises one mean over every target token (all streams, all processes); with `streams` each
    stream's loss is its own token mean and the step minimises their sum. The logged per-stream
    losses are token means either way, and `loss` is their sum."""
    cfg, info, model = run.cfg, run.info, run.model
    optimizer.zero_grad(set_to_none=True)
    accum = cfg.optim.grad_accum
    sums, counts, digests, tokens = {}, {}, {}, 0
    for micro in range(accum):
        batches = mixture.next_batch()
        names = list(batches)
        step_tokens = None
        if cfg.optim.loss_weighting == "tokens":  # one mean over every target token of the micro-batch
            local = sum(model.loss_targets(b.input_ids, b.attention_mask, b.loss_mask).sum() for b in batches.values())
            step_tokens = all_reduce_sum(torch.as_tensor(local, dtype=torch.float32, device=info.device), info).clamp(
                min=1
            )
        merge = cfg.optim.merge_streams and step_tokens is not None
        passes = pass_plan(_step_shapes(batches, info)) if merge else [[n] for n in names]
        for i, group in enumerate(passes):
            last = micro == accum - 1 and i == len(passes) - 1
            for name, (total, count) in _forward_backward(run, batches, group, step, step_tokens, last).items():
                sums[name] = sums.get(name, 0.0) + total
                counts[name] = counts.get(name, 0.0) + count
        for name in names:
            b = batches[name]
            digests.setdefault(name, []).extend(batch_digests(b))
            tokens += int(b.attention_mask.sum())
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    # Every micro-batch of every process: equal hashes in two runs mean the same data at that step.
    gathered: dict[str, list[bytes]] = {}
    for name, digest in all_gather_lists([(n, d) for n, ds in digests.items() for d in ds], info):
        gathered.setdefault(name, []).append(digest)
    metrics: dict = {}
    for name in sums:
        metrics[f"loss/{name}"] = float(
            all_reduce_sum(sums[name], info) / all_reduce_sum(counts[name], info).clamp(min=1)
        )
        metrics[f"batch/{name}"] = step_hash(gathered[name])
    metrics["loss"] = sum(v for k, v in metrics.items() if k.startswith("loss/"))
    metrics["grad_norm"] = float(grad_norm)
    metrics["tokens"] = tokens * info.world_size
    return metrics


# A forward+backward pass costs about this many tokens' work before its first token (dispatch of a
# few thousand small operators; benchmarks/step_profile.py on the tiny preset, 2 CPU cores).
PASS_OVERHEAD_TOKENS = 512


def pass_plan(shapes: dict[str, tuple[int, int]], overhead: int = PASS_OVERHEAD_TOKENS) -> list[list[str]]:
    """Which streams' batches (name -> (rows, length)) run together in one pass: taken by length, a
    stream joins the pass before it when the padding that adds costs less than a pass of its own."""
    order = sorted(shapes, key=lambda n: (shapes[n][1], n))
    passes: list[list[str]] = []
    for name in order:
        rows, length = shapes[name]
        if passes:
            group = passes[-1]
            width = max(shapes[n][1] for n in group)
            padding = sum(shapes[n][0] for n in group) * max(0, length - width) + rows * max(0, width - length)
            if padding < overhead:
                group.append(name)
                continue
        passes.append([name])
    return [sorted(group) for group in passes]


def _step_shapes(batches: dict, info: DistInfo) -> dict[str, tuple[int, int]]:
    """Each stream's (rows, length) for the pass plan, the length the longest over all processes: every
    process makes the same plan, so they run the same number of forward passes (DDP's collectives)."""
    local = [(n, int(b.input_ids.shape[0]), int(b.input_ids.shape[1])) for n, b in batches.items()]
    shapes: dict[str, tuple[int, int]] = {}
    for name, rows, length in all_gather_lists(local, info) if info.world_size > 1 else local:
        shapes[name] = (rows, max(length, shapes.get(name, (0, 0))[1]))
    return shapes


def merge_batches(batches: list[Batch], pad: int) -> Batch:
    """Rows of several batches as one right-padded batch (images in the rows' order)."""
    width = max(b.input_ids.shape[1] for b in batches)

    def widen(t: torch.Tensor, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    ids = torch.cat([widen(b.input_ids, pad) for b in batches])
    mask = torch.cat([widen(b.attention_mask, False) for b in batches])
    loss_mask = None
    if any(b.loss_mask is not None for b in batches):
        loss_mask = torch.cat(
            [
                widen(b.loss_mask if b.loss_mask is not None else torch.ones_like(b.attention_mask), False)
                for b in batches
            ]
        )
    chunks = [b.images for b in batches if b.images is not None]
    return Batch(ids, mask, torch.cat(chunks) if chunks else None, loss_mask)


def _forward_backward(
    run: Run, batches: dict, names: list[str], step: int, step_tokens, last: bool
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Forward and backward of one pass over the batches of `names` (one stream, or several merged);
    returns each stream's summed NLL and target count."""
    info, net, accum = run.info, run.net, run.cfg.optim.grad_accum
    b = batches[names[0]] if len(names) == 1 else merge_batches([batches[n] for n in names], run.tokenizer.special.pad)
    groups = None
    if len(names) > 1:
        groups = torch.cat([torch.full((batches[n].input_ids.shape[0],), i) for i, n in enumerate(names)])
    sync = contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
    with sync:
        with run.autocast:
            out = net(
                b.input_ids.to(info.device),
                None if b.images is None else b.images.to(info.device),
                b.attention_mask.to(info.device),
                None if b.loss_mask is None else b.loss_mask.to(info.device),
                return_logits=False,  # the loss fused with the output layer
                loss_groups=None if groups is None else groups.to(info.device),
            )
        n_targets = out.num_loss_tokens.detach().float()
        count = step_tokens if step_tokens is not None else all_reduce_sum(n_targets, info).clamp(min=1)
        total = out.loss.float() * out.num_loss_tokens  # this process's summed NLL
        loss = total / count * info.world_size / accum  # DDP averages gradients over processes
        if not torch.isfinite(loss):
            last_good = run.state.last_checkpoint
            kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
            where = f"stream '{names[0]}'" if len(names) == 1 else f"streams '{', '.join(names)}' (one pass)"
            raise TrainingError(f"non-finite loss at step {step} in {where}; {kept}")
        loss.backward()
    if groups is None:
        return {names[0]: (total.detach(), n_targets)}
    return {n: (out.group_nll[i], out.group_tokens[i]) for i, n in enumerate(names)}


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


class _StopRequest:
    """Ctrl-C (SIGINT) asks the loop to stop after the current step, with a checkpoint; a second
    Ctrl-C stops at once. `stop_when()`, asked once per step, asks the same without a signal."""

    def __init__(self, stop_when: Callable[[], bool] | None = None) -> None:
        self.signalled, self.stop_when = False, stop_when
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = None

    @property
    def requested(self) -> bool:
        return self.signalled or (self.stop_when is not None and self.stop_when())

    def _handle(self, signum, frame) -> None:
        self.signalled = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
