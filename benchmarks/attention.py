"""Time and peak memory of each attention backend against sequence length (causal, forward + backward).

One call of `toolkit.model.attention.attend` per backend and length on the same q, k, v (B, H, T, D),
median time over repeats after warm-up. Peak memory is what the attention adds above its inputs:
on CUDA `torch.cuda.max_memory_allocated`; on the CPU the process's peak resident set size, each
(backend, length) measured in a fresh subprocess so one row's high-water mark cannot hide another's.
Backends: eager (the reference, materialises the T x T scores), sdpa, and xformers on CUDA.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from toolkit.model.attention import AttentionMask, attend


def _inputs(batch: int, heads: int, seq: int, head_dim: int, device: str, dtype: torch.dtype):
    # Laid out as the decoder makes them: projected (B, T, H, D) viewed as (B, H, T, D).
    g = torch.Generator(device=device).manual_seed(0)
    return [
        torch.randn(batch, seq, heads, head_dim, generator=g, device=device, dtype=dtype)
        .transpose(1, 2)
        .requires_grad_(True)
        for _ in range(3)
    ]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak; Linux reports KiB


def _current_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(backend: str, seq: int, args) -> dict:
    """Median seconds of forward + backward and peak extra memory (MiB) for one backend and length."""
    dtype = getattr(torch, args.dtype)
    q, k, v = _inputs(args.batch, args.heads, seq, args.head_dim, args.device, dtype)
    mask = AttentionMask(seq, seq, causal=True, device=torch.device(args.device))
    # The output's gradient arrives as the decoder's output projection gives it back: (B, T, H, D).
    grad = torch.ones(args.batch, seq, args.heads, args.head_dim, device=args.device, dtype=dtype).transpose(1, 2)

    def step():
        out, _ = attend(q, k, v, mask, backend)
        out.backward(grad)
        q.grad = k.grad = v.grad = None

    if args.device == "cuda":
        step()  # loads the kernels
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        # A small call first, so that loading kernels and starting thread pools is not counted.
        small = _inputs(1, 1, 64, args.head_dim, args.device, dtype)
        attend(*small, AttentionMask(64, 64), backend)[0].sum().backward()
        del small
        base = _rss_mib()
    before = _current_mib(args.device)
    out, _ = attend(q, k, v, mask, backend)  # the memory measurement: what the forward keeps for backward,
    _sync(args.device)
    held = _current_mib(args.device) - before
    out.backward(grad)  # and the peak over forward + backward
    q.grad = k.grad = v.grad = None
    del out
    _sync(args.device)
    if args.device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _rss_mib() - base
    times = []
    for _ in range(args.repeats):
        _sync(args.device)
        start = time.perf_counter()
        step()
        _sync(args.device)
        times.append(time.perf_counter() - start)
    return {
        "backend": backend,
        "seq": seq,
        "ms": round(statistics.median(times) * 1e3, 2),
        "peak_mib": round(peak, 1),
        "held_mib": round(held, 1),
    }


def _in_subprocess(backend: str, seq: int, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        f"{backend}:{seq}",
        "--device",
        args.device,
        "--batch",
        str(args.batch),
        "--heads",
        str(args.heads),
        "--head-dim",
        str(args.head_dim),
        "--repeats",
        str(args.repeats),
        "--dtype",
        args.dtype,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"backend": backend, "seq": seq, "ms": None, "peak_mib": None, "held_mib": None, "error": last}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seqs", default="512,1024,2048,4096", help="comma-separated sequence lengths")
    parser.add_argument("--backends", default=None, help="comma-separated; default: eager,sdpa (+xformers on CUDA)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default=None, help="float32 on CPU, bfloat16 on CUDA unless given")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # BACKEND:SEQ, used by the CPU subprocesses
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.one:
        backend, seq = args.one.split(":")
        print(json.dumps(measure_one(backend, int(seq), args)))
        return
    backends = args.backends.split(",") if args.backends else ["eager", "sdpa"]
    if args.backends is None and args.device == "cuda":
        backends.append("xformers")
    rows = []
    for seq in (int(s) for s in args.seqs.split(",")):
        for backend in backends:
            if args.device == "cuda":
                try:
                    rows.append(measure_one(backend, seq, args))
                except Exception as err:  # an OOM or a missing kernel is a row, not the end of the table
                    rows.append(
                        {
                            "backend": backend,
                            "seq": seq,
                            "ms": None,
                            "peak_mib": None,
                            "held_mib": None,
                            "error": str(err)[:120],
                        }
                    )
                torch.cuda.empty_cache()
            else:
                rows.append(_in_subprocess(backend, seq, args))
    ref = {(r["seq"]): r for r in rows if r["backend"] == "eager" and r["ms"]}
    for r in rows:
        e = ref.get(r["seq"])
        r["speedup_vs_eager"] = round(e["ms"] / r["ms"], 2) if e and r["ms"] else None
        ok = e and r["ms"]
        r["memory_vs_eager"] = round(e["peak_mib"] / max(r["peak_mib"], 0.1), 1) if ok else None
        r["held_vs_eager"] = round(e["held_mib"] / max(r["held_mib"], 0.1), 1) if ok else None
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    result = {
        "device": name,
        "dtype": args.dtype,
        "batch": args.batch,
        "heads": args.heads,
        "head_dim": args.head_dim,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"causal attention fwd+bwd on {name}, {args.dtype}, B{args.batch} H{args.heads} D{args.head_dim}")
    print("peak: above the inputs over forward + backward; held: kept from forward for backward (MiB)")
    print(f"{'backend':<10}{'seq':>6}{'ms':>10}{'x faster':>10}{'peak':>10}{'x less':>8}{'held':>10}{'x less':>8}")
    for r in rows:
        if r["ms"] is None:
            print(f"{r['backend']:<10}{r['seq']:>6}  failed: {r['error']}")
            continue
        fast, mem, held = (
            f"{r[key]:.1f}" if r[key] else "-" for key in ("speedup_vs_eager", "memory_vs_eager", "held_vs_eager")
        )
        print(
            f"{r['backend']:<10}{r['seq']:>6}{r['ms']:>10.2f}{fast:>10}{r['peak_mib']:>10.1f}{mem:>8}"
            f"{r['held_mib']:>10.1f}{held:>8}"
        )


if __name__ == "__main__":
    main()
