"""`xmt reproduce`: the main job as an ordered list of stages.

Each stage is a function (scale, out_dir) -> one-line result; a stage the toolkit does not have yet
is listed with the issue that adds it, and nothing is faked for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

StageFn = Callable[[str, Path], str]


def model_check(scale: str, out: Path) -> str:
    """Build the preset, run one forward/backward on an interleaved batch, record the summary."""
    from toolkit.data.format import IMAGE, build_sequence, collate
    from toolkit.model.build import build_model
    from toolkit.model.presets import preset_config
    from toolkit.model.summary import summarize_preset

    summary = summarize_preset(scale)
    cfg = preset_config(scale)
    torch.manual_seed(0)
    model = build_model(cfg)
    n, v = model.num_image_tokens, cfg.decoder.vocab_size
    text = torch.randint(7, v, (2, 24)).tolist()
    seqs = [build_sequence([IMAGE, text[0]], cfg.tokens, n), build_sequence([text[1]], cfg.tokens, n)]
    pixels = torch.randn(1, cfg.vision.channels, model.vision.image_size, model.vision.image_size)
    batch = collate(seqs, cfg.tokens, images=[pixels, None])
    out_ = model(batch.input_ids, batch.images, batch.attention_mask)
    out_.loss.backward()
    grads_ok = all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    summary["init_loss"] = round(out_.loss.item(), 4)
    summary["uniform_loss"] = round(math.log(v), 4)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model_summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    tmp.replace(out / "model_summary.json")
    if not grads_ok or not math.isfinite(summary["init_loss"]):
        raise RuntimeError("model check failed: non-finite loss or gradients")
    return (
        f"{summary['total_params']:,} parameters; initial loss {summary['init_loss']} "
        f"(uniform would be {summary['uniform_loss']}); wrote {out / 'model_summary.json'}"
    )


def world_stage(scale: str, out: Path) -> str:
    """Build the world for this scale into OUT/world (kept and reused when already complete)."""
    from toolkit.world.build import build_world
    from toolkit.world.config import WORLD_PRESETS, world_config

    target = out / "world"
    if (target / "manifest.json").is_file():
        return f"reusing {target}"
    preset = scale if scale in WORLD_PRESETS else "tiny"
    result = build_world(world_config(preset), target, seed=0, progress=False, echo=lambda s: None)
    leaks = result["leakage"]["vision_only_total"]
    return f"{preset} world in {result['seconds']:.1f} s, {len(result['manifest'])} files, {leaks} vision-only leaks -> {target}"


# (stage name, implementation or None, what adds it)
STAGES: list[tuple[str, StageFn | None, str]] = [
    ("model check", model_check, ""),
    ("world build", world_stage, ""),
    ("train paper grids", None, "the training and grid issues"),
    ("evaluate", None, "the evaluation issue"),
    ("analyse", None, "the analysis issue"),
    ("paper tables and figures", None, "the paper-artifacts issue"),
]


def run_reproduce(scale: str, out: str, echo: Callable[[str], None] = print) -> bool:
    """Run every available stage in order; report missing ones. True when all available stages passed."""
    out_dir = Path(out)
    ok = True
    missing = []
    for i, (name, fn, added_by) in enumerate(STAGES, 1):
        if fn is None:
            missing.append(name)
            echo(f"[{i}/{len(STAGES)}] {name}: not available yet (added by {added_by})")
            continue
        try:
            echo(f"[{i}/{len(STAGES)}] {name}: {fn(scale, out_dir)}")
        except Exception as err:  # a failed stage is reported; later stages still get listed
            ok = False
            echo(f"[{i}/{len(STAGES)}] {name}: FAILED: {err}")
    if missing:
        echo(f"not reproduced yet: {', '.join(missing)}; no results were produced for them")
    return ok
