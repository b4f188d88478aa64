"""`xmt reproduce`: the main job, stage by stage, resumable.

model check -> world build -> the paper's grids (train + evaluate every cell; cells that train the
same model share one run) -> analysis of one multimodal run -> paper tables and figures -> a summary
of every artifact and the headline transfer effects.
A scale fixes the budget: `smoke` (seconds per cell, for CI), `tiny` (the default; a laptop CPU,
15% of the steps at which the learnability gates were found to pass, within 20 minutes on 2 cores;
the gates do not pass there), `half` (half of every stage's steps, 3 seeds) and `calibrated`
(every stage's steps and 3 seeds, where calibration found them passing).
Every stage reuses what a previous, interrupted run finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from toolkit.commands.stage_clock import StageClock
from toolkit.files import write_atomic

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scale:
    model: str  # model preset of the sanity check
    world: str  # world preset (built with seed 0 into OUT/world)
    grid_scale: str  # the scale of every paper grid (`scales:` in experiments/paper/<grid>.yaml)
    grids: tuple[str, ...]  # experiments/paper/<name>.yaml, in order
    analysis_limit: int  # VQA prompts for the attention study
    probe_attributes: tuple[str, ...]  # attributes probed layer by layer
    jobs: int = 1  # grid cells at a time (`xmt reproduce --jobs`)


# Grids whose cells train the same model share one run (toolkit.grid.run), so the seven grids train
# four models per seed: MLLM, LLM, instruction-tuned MLLM and its matched-compute control.
PAPER_GRIDS = (
    "visual-commonsense",
    "instruction-tuning",
    "language-tasks",
    "few-shot",
    "chain-of-thought",
    "descriptions",
    "classification",
)
SCALES = {
    "smoke": Scale(
        model="tiny",
        world="tiny",
        grid_scale="smoke",
        grids=PAPER_GRIDS,
        analysis_limit=2,
        probe_attributes=("colour",),
    ),
    "tiny": Scale(
        model="tiny",
        world="tiny",
        grid_scale="reproduce",
        grids=PAPER_GRIDS,
        analysis_limit=8,
        probe_attributes=("colour", "size", "shape"),
    ),
}
# the grids' scales of the same name: more steps and 3 seeds, the tiny scale's model, world and analysis
SCALES["half"] = dataclasses.replace(SCALES["tiny"], grid_scale="half")
SCALES["calibrated"] = dataclasses.replace(SCALES["tiny"], grid_scale="calibrated")


def model_check(scale: Scale, out: Path, echo: Callable[[str], None]) -> str:
    """Build the preset, run one forward/backward on an interleaved batch, record the summary."""
    from toolkit.data.format import IMAGE, build_sequence, collate
    from toolkit.model.build import build_model
    from toolkit.model.presets import preset_config
    from toolkit.model.summary import summarize_preset

    summary = summarize_preset(scale.model)
    cfg = preset_config(scale.model)
    model = build_model(cfg, seed=0)
    torch.manual_seed(0)
    n, v = model.num_image_tokens, cfg.decoder.vocab_size
    text = torch.randint(7, v, (2, 24)).tolist()
    seqs = [build_sequence([IMAGE, text[0]], cfg.tokens, n), build_sequence([text[1]], cfg.tokens, n)]
    pixels = torch.randn(1, cfg.vision.channels, model.vision.image_size, model.vision.image_size)
    batch = collate(seqs, cfg.tokens, images=[pixels, None])
    loss = model(batch.input_ids, batch.images, batch.attention_mask).loss
    loss.backward()
    grads_ok = all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    summary["init_loss"] = round(loss.item(), 4)
    summary["uniform_loss"] = round(math.log(v), 4)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "model_summary.json", json.dumps(summary, indent=2) + "\n")
    if not grads_ok or not math.isfinite(summary["init_loss"]):
        raise RuntimeError("model check failed: non-finite loss or gradients")
    return (
        f"{summary['total_params']:,} parameters; initial loss {summary['init_loss']} "
        f"(uniform would be {summary['uniform_loss']})"
    )


def world_stage(scale: Scale, out: Path, echo: Callable[[str], None]) -> str:
    """Build the world into OUT/world (kept and reused when already complete)."""
    from toolkit.world.build import build_world
    from toolkit.world.config import world_config

    target = out / "world"
    if (target / "manifest.json").is_file():
        return f"reusing {target}"
    result = build_world(world_config(scale.world), target, seed=0, progress=False, echo=lambda s: None)
    leaks = result["leakage"]["vision_only_total"]
    return (
        f"{scale.world} world in {result['seconds']:.1f} s, {len(result['manifest'])} files, {leaks} vision-only leaks"
    )


def scaled_grid(name: str, scale: Scale, out: Path):
    """A paper grid at the scale's grid scale (its budget, seeds and evaluation settings are in the
    grid file), reading the world of OUT/world. A cell's id does not depend on where its world lives,
    so `xmt grid table|status experiments/paper/<grid>.yaml --scale <grid scale> --results OUT/results`
    read these results."""
    from toolkit.grid.spec import load_grid

    grid = load_grid(ROOT / "experiments" / "paper" / f"{name}.yaml", scale.grid_scale)
    overrides = {**grid.spec.overrides, "data.world": str(out / "world")}
    return dataclasses.replace(grid, spec=dataclasses.replace(grid.spec, overrides=overrides))


def grids_stage(scale: Scale, out: Path, echo: Callable[[str], None]) -> str:
    from toolkit.grid.run import run_grid

    done = failed = 0
    for name in scale.grids:
        states = run_grid(
            scaled_grid(name, scale, out),
            out / "results",
            jobs=scale.jobs,
            echo=lambda line, name=name: echo(f"  {name} {line}"),
        )
        done += sum(s == "done" for s in states.values())
        failed += sum(s == "failed" for s in states.values())
    if failed:
        raise RuntimeError(
            f"{failed} grid cells failed (see {out / 'results'}/*/*/status.json); rerun to retry them with --retry-failed"
        )
    return f"{done} cells trained and evaluated ({', '.join(scale.grids)})"


def analysis_stage(scale: Scale, out: Path, echo: Callable[[str], None]) -> str:
    """Probing and attention on the first multimodal run of the visual-commonsense grid."""
    from analysis.attention import run_attention
    from analysis.probing import run_probing
    from toolkit.grid.run import results_dir

    grid = scaled_grid("visual-commonsense", scale, out)
    cell = next(c for c in grid.cells() if c.config.model.vision.enabled)
    run = results_dir(grid, out / "results") / cell.id / "run"
    done = out / "analysis" / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("cell") == cell.id:
        return f"reusing {out / 'analysis'} (cell {cell.id})"
    run_probing(run, out / "analysis" / "probe", attributes=scale.probe_attributes)
    run_attention(run, out / "analysis" / "attention", limit=scale.analysis_limit, overlays=2)
    write_atomic(done, json.dumps({"cell": cell.id}) + "\n")
    return f"probing and attention of cell {cell.id} -> {out / 'analysis'}"


def paper_stage(scale: Scale, out: Path, echo: Callable[[str], None]) -> str:
    from paper_figures.build import build_all

    paths = build_all(
        out / "results", out / "paper", scale=scale.grid_scale, echo=lambda s: None, analysis=out / "analysis"
    )
    return f"{len(paths)} files -> {out / 'paper'}"


STAGES: list[tuple[str, Callable[[Scale, Path, Callable[[str], None]], str]]] = [
    ("model check", model_check),
    ("world build", world_stage),
    ("paper grids (train + eval)", grids_stage),
    ("analysis", analysis_stage),
    ("paper tables and figures", paper_stage),
]


HEADLINE = (
    (  # expressed transfer (asked in text) and latent transfer (a probe of the nouns' text states)
        "visual-commonsense",
        [("world-colour", "vision_only"), ("world-size", "vision_only"), ("world-colour-latent", "vision_only")],
    ),
    ("instruction-tuning", [("world-vqa", None), ("world-raven", None)]),
)


def headline(scale: Scale, out: Path) -> list:
    """The paired comparisons of the visual-commonsense and instruction-tuning grids that were run."""
    from toolkit.grid.results import compare_grid

    comparisons = []
    for name, evals in HEADLINE:
        found = compare_grid(scaled_grid(name, scale, out), out / "results", evals)
        comparisons += [c for c in found if c.comparison is not None]  # the others did not run (yet)
    return comparisons


def _times(seconds: dict[str, float]) -> str:
    return ", ".join(f"{n} {t:.0f} s" for n, t in seconds.items()) + f"; total {sum(seconds.values()):.0f} s"


def write_summary(scale: Scale, out: Path, clock: StageClock, effects: list, gates: list[dict]) -> Path:
    """OUT/paper/summary.json: the gates, the headline effects with their CIs, seeds and stage times
    (this invocation's, and summed over every invocation of this OUT: an interrupted, resumed job
    states its whole cost)."""
    from paper_figures.common import git_commit

    seeds = sorted({seed for name in scale.grids for seed in scaled_grid(name, scale, out).spec.seeds})
    summary = {
        "scale": scale.grid_scale,
        "commit": git_commit(),
        "n_seeds": len(seeds),
        "seeds": seeds,
        "stages_seconds": clock.seconds(),
        "total_seconds": round(sum(clock.seconds().values()), 1),
        "invocations": clock.invocations,
        "stages_seconds_all_invocations": clock.all_seconds(),
        "total_seconds_all_invocations": round(sum(clock.all_seconds().values()), 1),
        "gates": gates,
        "gates_pass": all(g["pass"] for g in gates),
        "headline": [
            {
                "comparison": f"{c.a} - {c.b}",
                "task": c.eval,
                "group": c.group or "all",
                "effect": round(c.comparison.effect, 4),
                "ci95": [round(v, 4) for v in c.comparison.ci95],
                "p_value": float(f"{c.comparison.p_value:.3g}"),  # 3 significant digits: a small p stays nonzero
                "effect_size": None if math.isnan(c.comparison.effect_size) else round(c.comparison.effect_size, 3),
                "seeds": c.comparison.n_seeds,
                "examples": c.comparison.n_examples,
            }
            for c in effects
        ],
    }
    (out / "paper").mkdir(parents=True, exist_ok=True)
    return write_atomic(out / "paper" / "summary.json", json.dumps(summary, indent=1) + "\n")


def run_reproduce(scale: str, out: str, echo: Callable[[str], None] = print, jobs: int = 1) -> bool:
    """Run every stage in order; returns True when all passed. Prints the time of each stage, then
    the learnability gates and the headline effects, and writes them to OUT/paper/summary.json."""
    from toolkit.grid.learnability import format_gates, gate_results, load_learnability
    from toolkit.grid.run import GridInterrupted

    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}'; valid: {', '.join(SCALES)}")
    from paper_figures.common import git_commit

    s, out_dir = dataclasses.replace(SCALES[scale], jobs=jobs), Path(out)
    clock = StageClock(out_dir / "stage_times.json", commit=git_commit())
    ok = True
    for i, (name, fn) in enumerate(STAGES, 1):
        try:
            message = clock.run(name, lambda fn=fn: fn(s, out_dir, echo))
        except GridInterrupted as err:
            ok = False
            echo(f"[{i}/{len(STAGES)}] {name}: stopped: {err}")
            break
        except Exception as err:  # a failed stage is reported; later stages would read its missing output
            ok = False
            echo(f"[{i}/{len(STAGES)}] {name}: FAILED: {err}")
            break
        echo(f"[{i}/{len(STAGES)}] {name} ({clock.seconds()[name]:.0f} s): {message}")
    echo("time by stage: " + _times(clock.seconds()))
    if clock.invocations > 1:
        echo(
            f"time by stage over all {clock.invocations} invocations (OUT/stage_times.json): {_times(clock.all_seconds())}"
        )
    if ok:
        artifacts = sorted(
            p for p in out_dir.rglob("*") if p.is_file() and p.parent.name in ("paper", "probe", "attention")
        )
        echo("artifacts:\n" + "\n".join(f"  {p}" for p in artifacts))
        spec = load_learnability()
        grids = {g.grid: scaled_grid(g.grid, s, out_dir) for g in spec.gates}
        gates = gate_results(grids, out_dir / "results", spec)
        verdict = "all pass" if all(g["pass"] for g in gates) else "NOT ALL PASS: the models have not learned the world"
        echo(f"learnability gates ({verdict}; means over seeds):\n" + format_gates(gates))
        effects = headline(s, out_dir)
        lines = [c.describe() for c in effects]
        echo("headline effects (paired over seeds and examples, crossed):\n" + "\n".join(f"  {e}" for e in lines))
        echo(f"summary -> {write_summary(s, out_dir, clock, effects, gates)}")
    return ok
