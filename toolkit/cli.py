"""The `xmt` command line: thin commands that parse arguments and call one library function."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolkit.config import ConfigError
from toolkit.registry import UnknownNameError


class _Group(click.Group):
    """Turns the library's user-facing errors into one-line CLI errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, UnknownNameError, FileNotFoundError, FileExistsError) as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=_Group)
@click.version_option(package_name="xmt")
def main() -> None:
    """xmt: train, evaluate and analyse Kosmos-style multimodal LLMs for cross-modal transfer."""


@main.group(cls=_Group)
def model() -> None:
    """Inspect model presets."""


@model.command("summary")
@click.option("--preset", required=True, help="Model preset name (tiny, small, kosmos-1.3b).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def model_summary(preset: str, as_json: bool) -> None:
    """Parameter counts per component of PRESET, built on the meta device (no memory is allocated)."""
    from toolkit.model.summary import summarize_preset

    summary = summarize_preset(preset)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(summary_table(summary))


def summary_table(summary: dict) -> str:
    rows = [(k, v) for k, v in summary.items() if k.endswith("_params")]
    width = max(len(k) for k, _ in rows)
    shape = ", ".join(f"{k} {v}" for k, v in summary.items() if k != "preset" and not k.endswith("_params"))
    lines = [f"preset {summary['preset']}: {shape}"]
    lines += [f"  {k:<{width}}  {v:>15,}  ({v / 1e9:.3f}B)" for k, v in rows]
    return "\n".join(lines)


@main.group(cls=_Group)
def world() -> None:
    """Build the synthetic world (streams, tokenizer, eval sets, leakage report)."""


@world.command("build")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to write the world into.")
@click.option("--preset", default="tiny", show_default=True, help="World preset (tiny, full).")
@click.option("--seed", default=0, show_default=True, help="World seed: fixes the split, every sample and image.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a world config field, e.g. --set leakage.vision_only_caption=0.5 (repeatable).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def world_build(out: str, preset: str, seed: int, overrides: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Write the world into OUT; the same seed and config give byte-identical files."""
    from toolkit.config import parse_overrides
    from toolkit.world.build import build_world
    from toolkit.world.config import world_config

    cfg = world_config(preset, parse_overrides(overrides))
    build_world(cfg, out, seed=seed, force=force, progress=not quiet, echo=click.echo)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False), help="New run directory (must not exist or be empty).")
@click.option(
    "--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue this run from its last checkpoint."
)
def train(args: tuple[str, ...], out: str | None, resume_dir: str | None) -> None:
    """Train: xmt train CONFIG [key.sub=value ...] --out RUN_DIR, or xmt train --resume RUN_DIR.

    CONFIG is a run YAML (see experiments/runs/); overrides follow it, e.g. stages.0.steps=200.
    Launch with torchrun for several processes (DDP; FSDP2 with distributed.strategy=fsdp on CUDA).
    """
    from toolkit.train.config import load_run_config
    from toolkit.train.loop import TrainingError, TrainingInterrupted, load_run, run_training

    if resume_dir:
        if args or out:
            raise click.UsageError(
                "--resume RUN_DIR takes no CONFIG, overrides or --out: the run's config.yaml is used"
            )
        cfg, run_dir, resume = load_run(Path(resume_dir)), resume_dir, True
    else:
        if not args or not out:
            raise click.UsageError("give CONFIG and --out RUN_DIR (or --resume RUN_DIR)")
        cfg, run_dir, resume = load_run_config(args[0], args[1:]), out, False
    try:
        summary = run_training(cfg, run_dir, resume=resume)
    except TrainingInterrupted as err:
        click.echo(f"Stopped: {err}", err=True)
        sys.exit(130)
    except TrainingError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"trained {summary['steps']} steps -> {summary['run_dir']} (last checkpoint {summary['checkpoint']})")


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from err


@main.command("eval")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--tasks", default="world", show_default=True,
              help="Comma-separated task names, or 'world' for every world task (see --list).")  # fmt: skip
@click.option("--shots", default="0", show_default=True, help="Comma-separated numbers of demonstrations.")
@click.option("--trials", default=1, show_default=True, help="Demo redraws per few-shot cell.")
@click.option("--ablations", default="none", show_default=True,
              help="Few-shot demo controls: none,text,shuffle,blank (comma-separated).")  # fmt: skip
@click.option("--limit", type=int, default=None, help="Evaluate only the first N examples of each task.")
@click.option("--seed", default=0, show_default=True, help="Seed of the demo draws.")
@click.option("--data", "data", multiple=True, metavar="TASK=PATH", help="Read TASK from PATH (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), help="Results directory (default: RUN_DIR/eval).")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def eval_command(path, tasks, shots, trials, ablations, limit, seed, data, out, batch_size, device) -> None:
    """Evaluate PATH (a run directory's last checkpoint, or a checkpoint directory) on tasks.

    Writes eval/<cell>.json (metric, 95% bootstrap CI, groups, config, seeds) and
    eval/<cell>.samples.jsonl; finished cells are skipped on a rerun.
    """
    from toolkit.eval.runner import evaluate
    from toolkit.eval.tasks import WORLD_TASKS

    names = [t for t in tasks.split(",") if t]
    names = [n for t in names for n in (WORLD_TASKS if t == "world" else [t])]
    overrides = {}
    for item in data:
        task, sep, where = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--data expects TASK=PATH, got {item!r}")
        overrides[task] = where
    evaluate(path, names, _int_list(shots), trials, limit, [a for a in ablations.split(",") if a], seed, overrides,
             out, batch_size, device, echo=click.echo)  # fmt: skip


@main.command()
@click.option("--scale", default="tiny", show_default=True, help="Model preset scale to run at.")
@click.option("--out", default="runs/reproduce", show_default=True, help="Output directory.")
def reproduce(scale: str, out: str) -> None:
    """The main job: world -> paper grids -> eval -> analysis -> paper tables.

    Runs every stage the toolkit has so far and names the stages it does not have yet.
    """
    from toolkit.reproduce import run_reproduce

    ok = run_reproduce(scale=scale, out=out, echo=click.echo)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
