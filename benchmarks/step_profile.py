"""Where a tiny training step's time goes: data, each stream's forward+backward, clipping, the
optimizer, the batch digests; and how much of it is fixed per-operation cost (dispatch) rather than
arithmetic.

The step is the trainer's own (`toolkit.train.loop.setup` / `train_step` on a run config, default
`experiments/runs/tiny-mllm.yaml`). Dispatch is read two ways: (1) the same step with every stream's
batch cut to 1 sequence (the arithmetic shrinks by the batch factor, the operator count does not),
(2) the number of operators a step launches (torch.profiler, nested calls counted) times the measured
cost of an empty operator call. A third row takes the step as the trainer does by default, streams of
about equal length merged into one pass (`optim.merge_streams`). Run from the repository root:

    .venv/bin/python benchmarks/step_profile.py [RUN.yaml] [key=value ...] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toolkit.train import loop
from toolkit.train.config import load_run_config
from toolkit.train.distributed import init_distributed
from toolkit.world.build import ensure_world


def build(config: str, overrides: list[str], out: Path, batch_one: bool):
    extra = []
    if batch_one:
        cfg = load_run_config(config, overrides)
        extra = [f"data.streams.{i}.batch_size=1" for i in range(len(cfg.data.streams))]
    cfg = load_run_config(config, [*overrides, *extra, "logging.progress=false", "logging.tensorboard=false"])
    ensure_world(cfg.resolve(cfg.data.world), cfg.data.world_preset, cfg.data.world_seed, cfg.data.world_overrides)
    info = init_distributed(cfg.device)
    run = loop.setup(cfg, out, False, info, None)
    mixture = loop.stage_mixture(run, 0)
    optimizer = loop.stage_optimizer(run, cfg.stages[0])
    for group in optimizer.param_groups:
        group["lr"] = 1e-4
    return run, mixture, optimizer


def timed_parts(run, mixture, optimizer, steps: int) -> dict[str, float]:
    """Median milliseconds per part of a step, the step taken part by part as train_step does (its
    pass plan: streams merged into one pass when `optim.merge_streams`)."""
    parts: dict[str, list[float]] = {}

    def note(name, t0):
        parts.setdefault(name, [0.0] * (step + 1))
        parts[name] += [0.0] * (step + 1 - len(parts[name]))
        parts[name][step] += (time.perf_counter() - t0) * 1e3
        return time.perf_counter()

    for step in range(steps):
        t = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        batches = mixture.next_batch()
        t = note("data", t)
        count = sum(run.model.loss_targets(b.input_ids, b.attention_mask, b.loss_mask).sum() for b in batches.values())
        count = torch.as_tensor(count, dtype=torch.float32)
        shapes = {n: b.input_ids.shape for n, b in batches.items()}
        passes = loop.pass_plan(shapes) if run.cfg.optim.merge_streams else [[n] for n in sorted(batches)]
        for names in passes:
            loop._forward_backward(run, batches, names, step, count, True)
            t = note("fwd+bwd " + "+".join(names), t)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        t = note("clip", t)
        optimizer.step()
        t = note("optimizer", t)
        for b in batches.values():
            loop.batch_digests(b)
        note("digests", t)
    skip = 2 if steps > 4 else 0
    return {name: statistics.median(v[skip:]) for name, v in parts.items()}


def operator_count(run, mixture, optimizer) -> int:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loop.train_step(run, mixture, optimizer, 1)
    return sum(e.count for e in prof.key_averages())


def empty_op_us(n: int = 20000) -> float:
    x = torch.zeros(4)
    for _ in range(100):
        torch.add(x, 1)
    t = time.perf_counter()
    for _ in range(n):
        torch.add(x, 1)
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", default="experiments/runs/tiny-mllm.yaml")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"data.world={tmp}/world", *args.overrides]
        rows = {}
        variants = (
            ("configured batches, one pass per stream", False, ["optim.merge_streams=false"]),
            ("1 sequence per stream, one pass per stream", True, ["optim.merge_streams=false"]),
            ("configured batches, streams merged by length (default)", False, ["optim.merge_streams=true"]),
        )
        for label, one, extra in variants:
            run, mixture, optimizer = build(args.config, [*overrides, *extra], Path(tmp) / str(len(rows)), one)
            parts = timed_parts(run, mixture, optimizer, args.steps)
            ops = operator_count(run, mixture, optimizer)
            rows[label] = (parts, ops)
        op_us = empty_op_us()
    print(f"threads {args.threads}, {args.steps} steps, median ms per part; empty operator call {op_us:.1f} us\n")
    for label, (parts, ops) in rows.items():
        total = sum(parts.values())
        print(f"## {label}: {total:.1f} ms per step, {ops} operator calls (>= {ops * op_us / 1e3:.1f} ms dispatch)")
        print("| part | ms | share |\n|---|---|---|")
        for name, ms in parts.items():
            print(f"| {name} | {ms:.2f} | {ms / total:.0%} |")
        print()
    full, one, merged = (sum(parts.values()) for parts, _ in rows.values())
    print(f"a step at 1 sequence per stream takes {one / full:.0%} of the configured step's time (fixed cost)")
    print(f"merging streams by length: {full / merged:.2f}x the steps per second of one pass per stream")


if __name__ == "__main__":
    main()
