"""How fast a vision tower can learn what the world's images show, with direct supervision: the tower
(as `model.vision` of a preset, with overrides), mean-pooled, and a linear head, trained to name the
shape (or colour) of plain shapes drawn as the world's pairs draw them, then tested on new renders of
plain shapes and of objects (shapes drawn at an object's size rank). A calibration instrument: when a tower cannot learn shape
this way, the MLLM cannot name the objects (each category is one colour-shape pair) whatever the
mixture. Run from the repository root:

    .venv/bin/python benchmarks/vision_probe.py [vision.KEY=VALUE ...] [--steps 1500] [--attribute shape]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from toolkit.config import parse_overrides
from toolkit.data.images import ImageTransform
from toolkit.model import preset_config
from toolkit.model.vision import build_vision
from toolkit.train.tower import Renders, labelled_renders
from toolkit.world.config import world_config
from toolkit.world.ontology import COLOURS, SHAPES


def batch(rng, n: int, attribute: str, objects: bool, renders: Renders, transform):
    pixels, shapes, colours = labelled_renders(rng, n, renders, transform, objects=objects)
    return pixels, shapes if attribute == "shape" else colours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="vision.KEY=VALUE on the preset's vision tower")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--attribute", choices=("shape", "colour"), default="shape")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--every", type=int, default=500, help="test every this many steps")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_cfg = preset_config(args.preset, parse_overrides(args.overrides))
    vision = model_cfg.vision
    world = world_config("tiny")
    renders = Renders(world.image_size, world.colour_jitter)
    transform = ImageTransform(vision.image_size)
    tower = build_vision(vision)
    tower.init_weights()
    head = nn.Linear(tower.out_dim, len(SHAPES if args.attribute == "shape" else COLOURS))
    params = list(tower.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng, test_rng = np.random.default_rng(0), np.random.default_rng(12345)
    tests = {
        kind: batch(test_rng, 600, args.attribute, kind == "objects", renders, transform)
        for kind in ("plain shapes", "objects")
    }
    described = " ".join(args.overrides) or "preset"
    print(f"{args.preset} vision tower ({described}), {args.attribute}, batch {args.batch}, lr {args.lr}")
    print("| step | plain shapes | objects | seconds |\n|---|---|---|---|")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = batch(rng, args.batch, args.attribute, False, renders, transform)
        loss = nn.functional.cross_entropy(head(tower(x).mean(1)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                acc = {k: (head(tower(x).mean(1)).argmax(1) == y).float().mean().item() for k, (x, y) in tests.items()}
            print(
                f"| {step} | {acc['plain shapes']:.2f} | {acc['objects']:.2f} | {time.perf_counter() - start:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
