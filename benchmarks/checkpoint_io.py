"""What a verified checkpoint costs: seconds to save one (weights, trainer state, state, the manifest's
SHA-256 of every file, fsync) and to verify it before reading (all files for a resume; weights,
model config and state for evaluation), by model size. Models are built from
presets (optionally with a wider/deeper decoder) on the CPU; the optimizer state is AdamW's after one
step, as in training. Run from the repository root:

    .venv/bin/python benchmarks/checkpoint_io.py [--presets tiny small] [--dims 1024 2048]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from toolkit.model import build_model, preset_config
from toolkit.train import checkpoint as ckpt


def measure(label: str, model: torch.nn.Module, root: Path) -> str:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():  # one step with zero gradients: AdamW's state exists, weights unchanged
        p.grad = torch.zeros_like(p)
    optimizer.step()
    state = {"step": 1, "stage": 0, "stage_step": 1, "data": None}
    start = time.perf_counter()
    path = ckpt.save_checkpoint(root, model, optimizer, state, keep=1)
    saved = time.perf_counter() - start
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    start = time.perf_counter()
    reason = ckpt.verify(path)
    verified = time.perf_counter() - start
    start = time.perf_counter()
    reason = reason or ckpt.verify(path, weights_only=True)
    weights = time.perf_counter() - start
    assert reason is None, reason
    params = sum(p.numel() for p in model.parameters()) / 1e6
    shutil.rmtree(root / "checkpoints")
    return f"| {label} | {params:.1f} | {size:.0f} | {saved:.2f} | {verified:.2f} | {weights:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["tiny", "small"])
    parser.add_argument("--dims", nargs="*", type=int, default=[1024], help="also the small preset at these widths")
    args = parser.parse_args()
    print(
        "| model | parameters (M) | checkpoint (MiB) | save s | verify for a resume, s | verify for evaluation "
        "(weights only), s |\n|---|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            print(measure(name, build_model(preset_config(name), seed=0), Path(tmp)), flush=True)
        for dim in args.dims:
            overrides = {"decoder": {"dim": dim, "ffn_dim": 4 * dim, "heads": dim // 64}}
            model = build_model(preset_config("small", overrides), seed=0)
            print(measure(f"small, width {dim}", model, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
