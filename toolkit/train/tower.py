"""A small vision tower pretrained on the world's plain shapes: the tiny world's stand-in for CLIP.

Kosmos-1 reads images through a CLIP ViT pretrained elsewhere and frozen but for its last layer. A
tower trained from scratch inside the tiny MLLM learns colour but not shape: what reaches it through
the decoder is too little (docs/studies/calibration.md). With `model.vision.pretrain.steps`, a `vit`
tower first learns to name the colour and the shape of plain coloured shapes drawn by the world's
renderer (features mean-pooled, one linear head per attribute), and the MLLM starts from it. The tower
never sees a category of the world: no noun, and so no fact about one, reaches it.

The tower directory holds `tower.safetensors` (the tower's weights, without the heads) and
`tower.json` (what it was built from and how well it names colour and shape on new renders).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from toolkit.config import ConfigError, differences, to_dict
from toolkit.data.images import ImageTransform
from toolkit.files import atomic_path, read_json, write_atomic
from toolkit.model.config import TowerPretrainConfig, VisionConfig
from toolkit.model.vision import TOWER_WEIGHTS, build_vision
from toolkit.train.config import RunConfig
from toolkit.world.ontology import COLOURS, SHAPES, Category
from toolkit.world.render import render_generic, render_object

TOWER_RECORD = "tower.json"
# What a tower's weights depend on besides its pretraining: its architecture ...
ARCHITECTURE = ("kind", "image_size", "patch_size", "stem", "width", "layers", "heads", "mlp_dim", "channels")
TEST_RENDERS = 600  # new renders per test set (plain shapes; objects of random size rank)


@dataclasses.dataclass(frozen=True)
class Renders:
    """... and how the world draws its images."""

    image_size: int = 32
    colour_jitter: int = 18


def labelled_renders(
    rng: np.random.Generator, n: int, renders: Renders, transform: ImageTransform, objects: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n renders with their shape and colour indices (SHAPES, COLOURS): plain shapes as the world's
    pairs draw them, or (objects=True) shapes drawn as an object of a random size rank."""
    pixels, shapes, colours = [], [], []
    for _ in range(n):
        shape, colour = int(rng.integers(len(SHAPES))), int(rng.integers(len(COLOURS)))
        if objects:
            cat = Category("object", COLOURS[colour], int(rng.integers(1, 11)), "", "", SHAPES[shape])
            image = render_object(cat, renders.image_size, rng, renders.colour_jitter)
        else:
            image = render_generic(SHAPES[shape], COLOURS[colour], renders.image_size, rng, renders.colour_jitter)
        pixels.append(transform(image))
        shapes.append(shape)
        colours.append(colour)
    return torch.stack(pixels), torch.tensor(shapes), torch.tensor(colours)


class _Namer(nn.Module):
    """The tower, mean-pooled, with a linear head for shape and one for colour."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.shape = nn.Linear(tower.out_dim, len(SHAPES))
        self.colour = nn.Linear(tower.out_dim, len(COLOURS))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.tower(pixels).mean(1)
        return self.shape(pooled), self.colour(pooled)


def _accuracy(namer: _Namer, test: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
    pixels, shapes, colours = test
    with torch.no_grad():
        shape_logits, colour_logits = namer(pixels)
    return {
        "shape": round((shape_logits.argmax(1) == shapes).float().mean().item(), 4),
        "colour": round((colour_logits.argmax(1) == colours).float().mean().item(), 4),
    }


def tower_record(vision: VisionConfig, renders: Renders) -> dict:
    """What a tower is built from: architecture, pretraining settings and the world's renders."""
    return {
        "vision": {key: getattr(vision, key) for key in ARCHITECTURE},
        "pretrain": to_dict(vision.pretrain),
        "renders": dataclasses.asdict(renders),
    }


def pretrain_tower(
    vision: VisionConfig, renders: Renders, out: str | Path, echo: Callable[[str], None] = print
) -> dict:
    """Train the tower of `vision` on labelled plain shapes for `vision.pretrain.steps` steps and write
    it to `out` (weights, then the record; each through a temporary name). Returns the record."""
    settings = vision.pretrain
    if settings.steps < 1:
        raise ConfigError(f"vision.pretrain.steps: a tower to pretrain needs steps >= 1, got {settings.steps}")
    torch.manual_seed(settings.seed)
    tower = build_vision(dataclasses.replace(vision, path=None, pretrain=TowerPretrainConfig()))
    tower.init_weights()
    namer = _Namer(tower)
    transform = ImageTransform(vision.image_size)
    rng, test_rng = np.random.default_rng([settings.seed, 0]), np.random.default_rng([settings.seed, 1])
    tests = {
        "plain": labelled_renders(test_rng, TEST_RENDERS, renders, transform),
        "objects": labelled_renders(test_rng, TEST_RENDERS, renders, transform, objects=True),
    }
    optimizer = torch.optim.AdamW(namer.parameters(), lr=settings.lr, weight_decay=0.01)
    start = time.perf_counter()
    for _ in range(settings.steps):
        pixels, shapes, colours = labelled_renders(rng, settings.batch_size, renders, transform)
        shape_logits, colour_logits = namer(pixels)
        loss = nn.functional.cross_entropy(shape_logits, shapes) + nn.functional.cross_entropy(colour_logits, colours)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    namer.eval()
    record = {
        **tower_record(vision, renders),
        "accuracy": {kind: _accuracy(namer, test) for kind, test in tests.items()},
        "final_loss": round(loss.item(), 4),
        "seconds": round(time.perf_counter() - start, 1),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / TOWER_WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, str(tmp))
    write_atomic(out / TOWER_RECORD, json.dumps(record, indent=2) + "\n")
    acc = record["accuracy"]
    echo(
        f"tower {out}: {settings.steps} steps in {record['seconds']:.0f} s; names shape {acc['plain']['shape']:.2f} "
        f"(objects {acc['objects']['shape']:.2f}) and colour {acc['plain']['colour']:.2f} of new renders"
    )
    return record


def world_renders(world: str | None, vision: VisionConfig) -> Renders:
    """How the run's world draws images (its world.json); without a world, the tiny world's way at the
    tower's resolution."""
    if world and Path(world, "world.json").is_file():
        config = read_json(Path(world, "world.json"))["config"]
        return Renders(int(config.get("image_size", 32)), int(config.get("colour_jitter", 18)))
    return Renders(vision.image_size)


def with_tower(cfg: RunConfig, echo: Callable[[str], None] = print) -> RunConfig:
    """The run config with its pretrained tower in place (`ensure_tower`) and `vision.path` naming it."""
    vision = ensure_tower(cfg.model.vision, cfg.data.world, echo)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vision=vision))


def ensure_tower(vision: VisionConfig, world: str | None, echo: Callable[[str], None] = print) -> VisionConfig:
    """Pretrain the tower into `vision.path` unless it is there (processes that ask at once wait on a
    lock beside it), and check that a tower found there was built with these settings. Default path:
    `towers/<stem>-<digest of its settings>` beside the run's world (the world that draws its
    renders; `towers/` in the working directory without one). Returns `vision` with the path set."""
    if vision.kind != "vit" or not vision.pretrain.steps:
        return vision
    renders = world_renders(world, vision)
    if not vision.path:
        digest = hashlib.sha1(json.dumps(tower_record(vision, renders), sort_keys=True).encode()).hexdigest()
        root = Path(world).parent / "towers" if world else Path("towers")
        vision = dataclasses.replace(vision, path=str(root / f"{vision.stem}-{digest[:12]}"))
    path = Path(vision.path)
    if not (path / TOWER_RECORD).is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (path / TOWER_RECORD).is_file():
                echo(f"tower {path} not found: pretraining it ({vision.pretrain.steps} steps)")
                pretrain_tower(vision, renders, path, echo)
    built = read_json(path / TOWER_RECORD)
    wanted = tower_record(vision, renders)
    differ = sorted(differences({part: built.get(part) for part in wanted}, wanted))
    if differ:
        raise ConfigError(
            f"vision.path={path} holds a tower built with other settings (they differ in {', '.join(differ)}); "
            "point vision.path to another directory"
        )
    return vision
