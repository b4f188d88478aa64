"""Loader throughput on the tiny world next to what the tiny model consumes in training.

Builds (or reuses) a tiny world, then measures, in one process:
  - the mixture loader: samples/s and tokens/s per stream (decode, transform, tokenize, pack, collate);
  - the tiny model: samples/s of forward + backward + AdamW step on the same batches.
Prints a table (or --json). Goal: the loader is at least 5x faster than the model consumes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from toolkit.data.images import ImageTransform
from toolkit.data.mixture import Mixture, StreamConfig
from toolkit.data.tokenizer import load_tokenizer
from toolkit.model import build_model, preset_config
from toolkit.train.config import OptimConfig, StageConfig
from toolkit.train.optim import build_optimizer
from toolkit.train.precision import resolve_precision
from toolkit.world.build import build_world
from toolkit.world.config import world_config

BATCH = {"text": 16, "pairs": 16, "interleaved": 4}


def make_mixture(world: Path, num_image_tokens: int, max_len: int, seed: int = 0) -> Mixture:
    streams = [
        StreamConfig(n, n, [str(world / n / ("*.jsonl" if n == "text" else "*.tar"))], b) for n, b in BATCH.items()
    ]
    return Mixture(streams, load_tokenizer(world), num_image_tokens, max_len, ImageTransform(32), seed=seed)


def median_rate(fn, units: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        rates.append(units / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, help="an existing world directory (default: build a tiny one)")
    parser.add_argument("--steps", type=int, default=20, help="batches per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    tmp = None
    if args.world is None:
        tmp = tempfile.TemporaryDirectory()
        args.world = Path(tmp.name) / "world"
        build_world(world_config("tiny"), args.world, seed=0, progress=False, echo=lambda s: None)
    tok = load_tokenizer(args.world)
    cfg = preset_config("tiny", {"decoder": {"vocab_size": max(tok.vocab_size, 8)}})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    optim = build_optimizer(model, OptimConfig(), StageConfig(lr=1e-3))  # the trainer's AdamW
    bf16 = resolve_precision("auto", "cpu") == "bf16"  # the trainer's default precision on this CPU
    mix = make_mixture(args.world, model.num_image_tokens, args.max_len)
    per_step = sum(BATCH.values())

    mix.next_batch()  # warm-up
    loader = median_rate(lambda: [mix.next_batch() for _ in range(args.steps)], args.steps * per_step, args.repeats)
    batches = [mix.next_batch() for _ in range(args.steps)]

    def train():
        for step in batches:
            optim.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = sum(
                    model(b.input_ids, b.images, b.attention_mask, b.loss_mask, return_logits=False).loss
                    for b in step.values()
                )
            loss.backward()
            optim.step()

    train()  # warm-up
    trainer = median_rate(train, args.steps * per_step, args.repeats)
    tokens = sum(int(b.attention_mask.sum()) for step in batches for b in step.values()) / args.steps
    result = {
        "loader_samples_per_s": round(loader, 1),
        "train_samples_per_s": round(trainer, 1),
        "ratio": round(loader / trainer, 2),
        "tokens_per_step": round(tokens, 1),
        "batch": BATCH,
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'what':<32}{'samples/s':>12}")
        print(f"{'mixture loader (1 process)':<32}{result['loader_samples_per_s']:>12}")
        print(f"{'tiny model train step':<32}{result['train_samples_per_s']:>12}")
        print(
            f"loader / consumption = {result['ratio']}x (goal >= 5x); {tokens:.0f} tokens per step, "
            f"batch {BATCH}, {result['threads']} threads"
        )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
