"""Model FLOPs utilisation of a preset's decoder train step on one CUDA GPU.

The step is the trainer's: bf16 autocast, forward + loss, backward, gradient clipping, fused AdamW
(toolkit.train.optim.build_optimizer), on a random text batch (vision off: the decoder is what MFU
measures). FLOPs per token = 6 N + 12 L d T (PaLM's convention, attention counted as non-causal),
N = parameters in matrix products (decoder blocks + output projection; the embedding lookup is not
a product). MFU = FLOPs/s achieved / the card's dense bf16 peak. Each row runs in its own process so
that compile caches and memory do not carry over; a failed row (e.g. out of memory) says why.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, no sparsity


def peak_tflops(name: str) -> float | None:
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run_one(args) -> dict:
    from toolkit.model import build_model, preset_config
    from toolkit.train.config import OptimConfig, StageConfig
    from toolkit.train.optim import build_optimizer

    overrides = {
        "vision": {"kind": "none"},
        "decoder": {
            "attention": args.attention,
            "compile": args.compile == "blocks",
            "gradient_checkpointing": args.checkpointing,
        },
    }
    cfg = preset_config(args.preset, overrides)
    d = cfg.decoder
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = build_model(cfg, seed=0).train()
    step_model = torch.compile(model) if args.compile == "model" else model
    optim = build_optimizer(model, OptimConfig(), StageConfig())
    ids = torch.randint(7, d.vocab_size, (args.batch, args.seq), device="cuda")
    n_matmul = sum(p.numel() for name, p in model.decoder.named_parameters() if "embed_positions" not in name)
    if not d.tie_embeddings:
        n_matmul -= model.decoder.embed_tokens.weight.numel()  # the untied input table is a lookup
    flops_per_token = 6 * n_matmul + 12 * d.layers * d.dim * args.seq

    def step():
        optim.zero_grad(set_to_none=True)
        for _ in range(args.accum):  # micro-batches of one optimizer step, as optim.grad_accum
            with torch.autocast("cuda", dtype=torch.bfloat16):
                # As the trainer calls it: the loss fused with the output layer (`logits` rows: from logits).
                loss = step_model(ids, return_logits=args.logits).loss
            (loss / args.accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)
        optim.step()
        return loss

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(args.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    tokens = args.batch * args.seq * args.accum
    achieved = flops_per_token * tokens / sec / 1e12
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name)
    return {
        "device": name,
        "preset": args.preset,
        "attention": args.attention,
        "compile": args.compile,
        "checkpointing": args.checkpointing,
        "loss_from": "logits" if args.logits else "fused",
        "batch": args.batch,
        "accum": args.accum,
        "seq": args.seq,
        "matmul_params": n_matmul,
        "step_s": round(sec, 4),
        "tokens_per_s": round(tokens / sec),
        "tflops": round(achieved, 1),
        "mfu": round(achieved / peak, 3) if peak else None,
        "warmup_s": round(warmup_s, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        "loss": round(float(loss), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="kosmos-1.3b")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument(
        "--rows",
        default="xformers:model:12,sdpa:model:12,sdpa:model:8:accum4",
        help="comma-separated ATTENTION:COMPILE:BATCH[:ckpt][:logits][:accumN] rows; COMPILE: eager (none) | blocks "
        "(decoder.compile: each block) | model (torch.compile of the whole model, loss included); ckpt: "
        "gradient checkpointing; logits: the loss from full logits instead of fused with the output layer; "
        "accumN: N micro-batches per optimizer step",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/mfu.py needs a CUDA GPU")
    if args.one:
        parts = args.one.split(":")
        args.attention, args.compile, args.batch = parts[0], parts[1], int(parts[2])
        args.checkpointing = "ckpt" in parts[3:]
        args.accum = next((int(p[5:]) for p in parts[3:] if p.startswith("accum")), 1)
        args.logits = "logits" in parts[3:]
        print(json.dumps(run_one(args)))
        return
    rows = []
    for spec in args.rows.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            spec,
            "--preset",
            args.preset,
            "--seq",
            str(args.seq),
            "--warmup",
            str(args.warmup),
            "--steps",
            str(args.steps),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode == 0:
            row = json.loads(out.stdout.strip().splitlines()[-1])
        else:
            err = [line for line in out.stderr.strip().splitlines() if "Error" in line] or ["no output"]
            row = {"spec": spec, "error": err[-1][:200]}
        rows.append(row)
        print(json.dumps(row) if args.json else _line(row, spec), flush=True)


def _line(row: dict, spec: str) -> str:
    if "error" in row:
        return f"{spec:<28} failed: {row['error']}"
    mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
    return (
        f"{spec:<28} {row['device']}: {row['tokens_per_s']:>8,} tok/s  {row['tflops']:>6.1f} TFLOP/s  MFU {mfu:>6}  "
        f"step {row['step_s']:.3f} s  peak {row['peak_mem_gib']} GiB  warm-up {row['warmup_s']} s"
    )


if __name__ == "__main__":
    main()
