"""How fast a vision tower can learn what the world's images show, with direct supervision: the tower
(as `model.vision` of a preset, with overrides), mean-pooled, and a linear head, trained to name the
shape (or colour) of plain shapes drawn as the world's pairs draw them, then tested on new renders of
plain shapes and of the world's objects. A calibration instrument: when a tower cannot learn shape
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
from toolkit.world.config import world_config
from toolkit.world.ontology import COLOURS, SHAPES, build_ontology
from toolkit.world.render import render_generic, render_object


def batch(rng, n: int, attribute: str, objects: bool, cats, transform, size: int, jitter: int):
    labels = SHAPES if attribute == "shape" else COLOURS
    xs, ys = [], []
    for _ in range(n):
        if objects:
            cat = cats[int(rng.integers(len(cats)))]
            image, shape, colour = render_object(cat, size, rng, jitter), cat.shape, cat.colour
        else:
            shape, colour = SHAPES[int(rng.integers(len(SHAPES)))], COLOURS[int(rng.integers(len(COLOURS)))]
            image = render_generic(shape, colour, size, rng, jitter)
        xs.append(transform(image))
        ys.append(labels.index(shape if attribute == "shape" else colour))
    return torch.stack(xs), torch.tensor(ys)


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
    cats = build_ontology(world.num_categories, world.vision_only_fraction, 0)
    transform = ImageTransform(vision.image_size)
    tower = build_vision(vision)
    tower.init_weights()
    head = nn.Linear(tower.out_dim, len(SHAPES if args.attribute == "shape" else COLOURS))
    params = list(tower.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    rng, test_rng = np.random.default_rng(0), np.random.default_rng(12345)
    tests = {
        kind: batch(
            test_rng, 600, args.attribute, kind == "objects", cats, transform, world.image_size, world.colour_jitter
        )
        for kind in ("plain shapes", "objects")
    }
    described = " ".join(args.overrides) or "preset"
    print(f"{args.preset} vision tower ({described}), {args.attribute}, batch {args.batch}, lr {args.lr}")
    print("| step | plain shapes | objects | seconds |\n|---|---|---|---|")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = batch(rng, args.batch, args.attribute, False, cats, transform, world.image_size, world.colour_jitter)
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
