"""Tiny training runs per hour on this machine: the trainer's own step (`toolkit.train.loop`) on a run
config (default `experiments/runs/tiny-mllm.yaml`), in J processes of T threads at once (a grid's
`--jobs J`), with one forward/backward pass per stream (before) or streams merged by length (after,
`optim.merge_streams`, the default). Each process takes `--steps` steps after 3 warm-up steps; runs per
hour = processes x 3600 / (seconds per step x steps of one run). Run from the repository root:

    .venv/bin/python benchmarks/runs_per_hour.py [--run-steps 1350] [--steps 30] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path


def worker(config: str, overrides: list[str], out: str, threads: int, steps: int, start, queue) -> None:
    import torch

    from toolkit.train import loop
    from toolkit.train.config import load_run_config
    from toolkit.train.distributed import init_distributed

    torch.set_num_threads(threads)
    cfg = load_run_config(config, [*overrides, f"threads={threads}", "logging.progress=false"])
    run = loop.setup(cfg, Path(out), False, init_distributed(cfg.device), None)
    mixture = loop.stage_mixture(run, 0)
    optimizer = loop.stage_optimizer(run, cfg.stages[0])
    for step in range(3):
        loop.train_step(run, mixture, optimizer, step + 1)
    start.wait()  # every process measures the same moments
    t = time.perf_counter()
    for step in range(steps):
        loop.train_step(run, mixture, optimizer, step + 4)
    queue.put((time.perf_counter() - t) / steps)


def measure(config, overrides, jobs, threads, steps, tmp) -> float:
    """Mean seconds per step of `jobs` processes training at once."""
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(jobs), ctx.Queue()
    procs = [
        ctx.Process(
            target=worker,
            args=(config, overrides, f"{tmp}/{jobs}-{threads}-{i}-{time.time_ns()}", threads, steps, start, queue),
        )
        for i in range(jobs)
    ]
    for p in procs:
        p.start()
    per_step = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(per_step) / len(per_step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--config", default="experiments/runs/tiny-mllm.yaml")
    parser.add_argument("--steps", type=int, default=30, help="measured steps per process")
    parser.add_argument("--run-steps", type=int, default=1350, help="steps of one run (for runs per hour)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    layouts = [(1, cores), (cores, 1)] if cores > 1 else [(1, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        world = [f"data.world={tmp}/world"]
        from toolkit.train.config import load_run_config
        from toolkit.world.build import ensure_world

        cfg = load_run_config(args.config, [*world, *args.overrides])
        ensure_world(cfg.resolve(cfg.data.world), cfg.data.world_preset, cfg.data.world_seed, cfg.data.world_overrides)
        print(f"{cores} cores; {args.config} {' '.join(args.overrides)}; {args.steps} steps per process measured\n")
        print("| processes x threads | passes | s per step | runs of", args.run_steps, "steps per hour |")
        print("|---|---|---|---|")
        for jobs, threads in layouts:
            for merge, label in ((False, "one per stream"), (True, "merged by length")):
                overrides = [*world, *args.overrides, f"optim.merge_streams={str(merge).lower()}"]
                per_step = measure(args.config, overrides, jobs, threads, args.steps, tmp)
                per_hour = jobs * 3600 / (per_step * args.run_steps)
                print(f"| {jobs} x {threads} | {label} | {per_step:.3f} | {per_hour:.1f} |", flush=True)


if __name__ == "__main__":
    main()
