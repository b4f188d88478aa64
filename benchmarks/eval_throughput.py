"""Evaluation speed: every world task on the tiny model (goal: all of them within 2 minutes on 2
cores), and batched against one-at-a-time ranking on the same requests.

Uses a run directory when given (its last checkpoint), else trains nothing: it saves a randomly
initialised tiny model into a temporary run over a freshly built tiny world.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from toolkit.data.shards import SkipLog
from toolkit.eval.examples import LOADERS
from toolkit.eval.prompts import fill
from toolkit.eval.runner import evaluate, load_checkpoint
from toolkit.eval.tasks import TASKS, WORLD_TASKS


def random_run(root: Path) -> Path:
    from toolkit.train.config import load_run_config
    from toolkit.train.loop import run_training
    from toolkit.world.build import ensure_world

    cfg = load_run_config(
        Path(__file__).parents[1] / "experiments" / "runs" / "tiny-mllm.yaml",
        [f"data.world={root / 'world'}", "stages.0.steps=1", "stages.0.lr=1e-12", "logging.progress=false"],
    )
    ensure_world(cfg.data.world, cfg.data.world_preset, cfg.data.world_seed, cfg.data.world_overrides)
    run_training(cfg, root / "run")
    return root / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a run directory (default: a random tiny model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    run = args.run or random_run(Path(tmp.name))

    timings = {}
    for task in WORLD_TASKS:
        start = time.perf_counter()
        evaluate(run, [task], out=Path(tmp.name) / "eval", echo=lambda s: None)
        timings[task] = round(time.perf_counter() - start, 2)

    loaded = load_checkpoint(run, batch_size=32)
    spec = TASKS.get("world-colour")
    examples = LOADERS.get(spec.loader)(f"{loaded.world}/eval/visual_commonsense_colour.jsonl", SkipLog())
    requests = [(fill(spec.prompt, ex), c) for ex in examples for c in spec.candidates]
    rates = {}
    for batch_size in (32, 1):
        loaded.adapter.batch_size = batch_size
        start = time.perf_counter()
        loaded.adapter.rank(requests)
        rates[batch_size] = len(requests) / (time.perf_counter() - start)
    result = {
        "tasks_seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
        "rank_requests_per_s": {"batch_32": round(rates[32], 1), "batch_1": round(rates[1], 1)},
        "speedup": round(rates[32] / rates[1], 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'task':<36}{'seconds':>10}")
        for task, seconds in timings.items():
            print(f"{task:<36}{seconds:>10.2f}")
        print(f"{'all world tasks':<36}{result['total_seconds']:>10.1f}   (goal <= 120 s)")
        print(
            f"ranking {len(requests)} requests: batch 32 {rates[32]:.0f}/s, one at a time {rates[1]:.0f}/s ({result['speedup']}x)"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
