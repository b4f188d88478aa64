"""The `xmt` command line: thin commands that parse arguments and call one library function."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from toolkit.config import ConfigError, DataError
from toolkit.registry import UnknownNameError

# Errors a user's input causes (configs, files, data, checkpoints, names): one line, exit code 1.
USER_ERRORS = (ConfigError, DataError, UnknownNameError, FileNotFoundError, FileExistsError)


class _Group(click.Group):
    """Turns the library's user-facing errors into one-line CLI errors (XMT_DEBUG=1: the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            if os.environ.get("XMT_DEBUG"):
                raise
            raise click.ClickException(str(err).splitlines()[0] if str(err) else type(err).__name__) from err


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
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="World seed: fixes the split, every sample and image.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a world config field, e.g. --set leakage.vision_only_caption=0.5 (repeatable).",
)
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
    from toolkit.eval.runner import evaluator
    from toolkit.train.config import load_run_config
    from toolkit.train.loop import TrainingError, TrainingInterrupted, run_training
    from toolkit.train.rundir import load_run
    from toolkit.train.tower import with_tower
    from toolkit.world.build import ensure_world

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
    ensure_world(cfg.data.world, cfg.data.world_preset, cfg.data.world_seed, cfg.data.world_overrides)
    cfg = with_tower(cfg)
    try:
        summary = run_training(cfg, run_dir, resume=resume, evaluate=evaluator(cfg, run_dir))
    except TrainingInterrupted as err:
        click.echo(f"Stopped: {err}", err=True)
        sys.exit(130)
    except TrainingError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"trained {summary['steps']} steps -> {summary['run_dir']} (last checkpoint {summary['checkpoint']})")
    for stream, reasons in summary["skipped"].items():
        for reason, entry in reasons.items():
            click.echo(f"skipped in stream '{stream}': {entry['count']} x {reason} (first: {entry['first']})")


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError as err:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from err


@main.command("eval")
@click.argument("path", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--list", "list_tasks", is_flag=True, help="List every task (family, scoring, few-shot, data) and exit.")
@click.option(
    "--tasks",
    default="world",
    show_default=True,
    help="Comma-separated task names, or 'world' for every world task (see --list).",
)
@click.option("--shots", default="0", show_default=True, help="Comma-separated numbers of demonstrations.")
@click.option(
    "--trials", type=click.IntRange(min=1), default=1, show_default=True, help="Demo redraws per few-shot cell."
)
@click.option(
    "--ablations",
    default="none",
    show_default=True,
    help="Few-shot demo controls: none,text,shuffle,blank (comma-separated).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Evaluate only the first N examples of each task."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the demo draws.")
@click.option(
    "--paraphrases",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ask each question in up to N phrasings (the task's prompt first; --list shows how many a task has), "
    "each its own cell <cell>-p<K>.",
)
@click.option("--data", "data", multiple=True, metavar="TASK=PATH", help="Read TASK from PATH (repeatable).")
@click.option(
    "--world",
    type=click.Path(exists=True, file_okay=False),
    help="World directory for the world tasks (default: the run's data.world; needed by imported runs "
    "and Hugging Face models).",
)
@click.option("--out", type=click.Path(file_okay=False), help="Results directory (default: RUN_DIR/eval).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--device", default="cpu", show_default=True)
def eval_command(
    path, list_tasks, tasks, shots, trials, ablations, limit, seed, paraphrases, data, world, out, batch_size, device
) -> None:
    """Evaluate PATH (a run directory's last checkpoint, a checkpoint directory, or a Hugging Face
    model directory: LLaVA, Qwen2-VL / Qwen2.5-VL, Idefics3 / SmolVLM, PaliGemma or a text-only
    causal LM, its family read from config.json) on tasks.

    Writes eval/<cell>.json (metric, 95% bootstrap CI, groups, config, seeds) and
    eval/<cell>.samples.jsonl; finished cells are skipped on a rerun.
    """
    from toolkit.eval.runner import evaluate
    from toolkit.eval.tasks import WORLD_TASKS, describe_tasks

    if list_tasks:
        click.echo(describe_tasks())
        return
    if path is None:
        raise click.UsageError(
            "Missing argument 'PATH' (a run, checkpoint or Hugging Face model directory), or pass --list."
        )

    names = [t for t in tasks.split(",") if t]
    names = [n for t in names for n in (WORLD_TASKS if t == "world" else [t])]
    if not names:
        raise click.BadParameter("no task names given; see --list", param_hint="--tasks")
    overrides = _data_overrides(data)
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}: not among the tasks evaluated ({', '.join(names)})", param_hint="--data"
        )
    evaluate(
        path,
        names,
        _int_list(shots),
        trials,
        limit,
        [a for a in ablations.split(",") if a],
        seed,
        overrides,
        out,
        batch_size,
        device,
        echo=click.echo,
        world=world,
        paraphrases=paraphrases,
    )


@main.group(cls=_Group)
def grid() -> None:
    """Ablation grids: plan, run (resumable), status, tables with CIs across training seeds."""


def _grid_options(f):
    f = click.option("--scale", default="tiny", show_default=True, help="Grid scale (tiny, or one under `scales:`).")(f)
    f = click.option("--results", type=click.Path(file_okay=False), help="Results root (default: results/).")(f)
    return click.argument("grid_file", type=click.Path(exists=True, dir_okay=False))(f)


@grid.command("plan")
@_grid_options
def grid_plan(grid_file: str, scale: str, results: str | None) -> None:
    """Print the question and every cell (id, arm, seed, overrides) of GRID_FILE (a real-pairs grid:
    its pairs, tasks and phrasings)."""
    from toolkit.grid.real import is_real_grid, load_real_grid
    from toolkit.grid.spec import load_grid

    if is_real_grid(grid_file):
        g = load_real_grid(grid_file)
        for pair in g.pairs:
            click.echo(f"  {pair.name}: mllm {pair.mllm}  llm {pair.llm}")
        click.echo(f"{len(g.pairs)} pairs; tasks: {', '.join(g.tasks)}; up to {g.paraphrases} phrasings each")
        return

    g = load_grid(grid_file, scale)
    cells = g.cells()
    click.echo(f"{g.name} ({scale}): {g.spec.question}" + (f" [mirrors {g.spec.mirrors}]" if g.spec.mirrors else ""))
    for c in cells:
        click.echo(f"  {c.id}  seed={c.seed}  {c.label}")
    tasks = ", ".join(g.eval_tasks()) or "(none)"
    click.echo(f"{len(cells)} cells, {len({c.arm for c in cells})} arms; tasks: {tasks}")


@grid.command("run")
@_grid_options
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Cells at a time (local pool; threads are shared out).",
)
@click.option("--executor", type=click.Choice(["local", "submitit-local", "slurm"]), default="local", show_default=True)
@click.option("--retry-failed", is_flag=True, help="Also rerun cells that failed before.")
@click.option(
    "--slurm",
    "slurm",
    multiple=True,
    metavar="KEY=VALUE",
    help="submitit parameter for --executor slurm, e.g. slurm_partition=gpu, gpus_per_node=8, "
    "timeout_min=1440 (repeatable; numbers are read as numbers).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="TASK=PATH",
    help="A real-pairs grid reads TASK from PATH (repeatable; overrides the grid file's data:).",
)
def grid_run(
    grid_file: str,
    scale: str,
    results: str | None,
    jobs: int,
    executor: str,
    retry_failed: bool,
    slurm: tuple[str, ...],
    data: tuple[str, ...],
) -> None:
    """Train and evaluate every cell of GRID_FILE; finished cells are skipped, half-finished ones resume.

    A real-pairs grid (experiments/real/, a `pairs:` list of VLM and base LLM directories) evaluates
    both models of each pair on its tasks in every phrasing, then prints the paired table."""
    import yaml

    from toolkit.grid.real import is_real_grid, load_real_grid, run_real_grid
    from toolkit.grid.run import GridInterrupted, run_grid
    from toolkit.grid.spec import load_grid

    if is_real_grid(grid_file):
        run_real_grid(load_real_grid(grid_file, _data_overrides(data)), results, echo=click.echo)
        _print_real_table(grid_file, results, "md")
        return
    if data:
        raise click.BadParameter("only a real-pairs grid (a `pairs:` list) reads --data", param_hint="--data")

    params = {}
    for item in slurm:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--slurm expects KEY=VALUE, got {item!r}")
        params[key] = yaml.safe_load(value)
    try:
        states = run_grid(
            load_grid(grid_file, scale), results, jobs, executor, retry_failed, echo=click.echo, slurm=params or None
        )
    except (GridInterrupted, KeyboardInterrupt) as err:
        click.echo(f"Stopped: {err or 'interrupted'}", err=True)
        sys.exit(130)
    failed = [c for c, s in states.items() if s == "failed"]
    click.echo(
        f"{sum(s == 'done' for s in states.values())}/{len(states)} cells done"
        + (f", {len(failed)} failed" if failed else "")
    )
    if failed:
        sys.exit(1)


@grid.command("status")
@_grid_options
@click.option("--json", "as_json", is_flag=True, help="One JSON list instead of lines.")
def grid_status_command(grid_file: str, scale: str, results: str | None, as_json: bool) -> None:
    """State of every cell: pending, running, interrupted (its process is gone; `grid run` resumes it), done or
    failed (with the error)."""
    from toolkit.grid.run import grid_status
    from toolkit.grid.spec import load_grid

    rows = grid_status(load_grid(grid_file, scale), results)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['state']:<8} seed={r['seed']}  {r['label']}" + (f"  ({r['error']})" if r["error"] else "")
        )


@grid.command("table")
@_grid_options
@click.option("--pivot", help="Spread this column across the table (e.g. group, label).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "tex"]), default="md", show_default=True)
@click.option(
    "--step",
    type=int,
    help="Read the cells' evaluations during training at this step (eval.every) instead of the final ones.",
)
def grid_table(grid_file: str, scale: str, results: str | None, pivot: str | None, fmt: str, step: int | None) -> None:
    """Mean and 95% CI across training seeds per arm and task, then the grid's paired comparisons
    (with --step, at that training step). A real-pairs grid: one paired row per pair and task
    (MLLM - base LLM over examples x phrasings), also written to RESULTS/real/<grid>/comparisons.csv."""
    from toolkit.grid.real import is_real_grid
    from toolkit.grid.results import collect, compare_grid, format_table, summarize
    from toolkit.grid.spec import load_grid

    if is_real_grid(grid_file):
        if step is not None:
            raise click.BadParameter("a real-pairs grid has no training steps", param_hint="--step")
        _print_real_table(grid_file, results, fmt)
        return
    g = load_grid(grid_file, scale)
    _check_step(g, results, step)
    df = collect(g, results, step)
    click.echo(format_table(summarize(df), fmt, pivot))
    if df.empty:
        return
    failed = set()  # an eval cell an arm has no results for is reported once, not once per group
    for c in compare_grid(g, results, step=step):
        if c.comparison is None and (c.a, c.b, c.eval) in failed:
            continue
        if c.comparison is None:
            failed.add((c.a, c.b, c.eval))
        click.echo(c.describe())


@grid.command("curve")
@_grid_options
@click.option("--eval", "eval_cells", multiple=True, help="Eval cell to compare (repeatable; default: every one).")
@click.option(
    "--group",
    help="Result group, e.g. vision_only (default: with --eval the whole eval cell, else it and every group).",
)
@click.option(
    "--out",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Also write the curve to this file: .csv the rows, .md a markdown table in points (repeatable).",
)
def grid_curve(
    grid_file: str,
    scale: str,
    results: str | None,
    eval_cells: tuple[str, ...],
    group: str | None,
    out: tuple[str, ...],
) -> None:
    """The grid's paired comparisons as curves over training: the effect with its 95% CI at every step
    the cells were evaluated at during training (eval.every), and at the end."""
    from toolkit.files import atomic_path, write_atomic
    from toolkit.grid.results import compare_curve, curve_markdown, rounded
    from toolkit.grid.spec import load_grid

    for path in out:
        if not path.endswith((".csv", ".md")):
            raise click.BadParameter(f"{path}: write a .csv or a .md file", param_hint="--out")

    g = load_grid(grid_file, scale)
    evals = [(ev, group) for ev in eval_cells] if eval_cells else None
    df = compare_curve(g, results, evals)
    if group and not eval_cells and not df.empty:
        df = df[df["group"] == group]
    done = df[df["reason"] == ""] if not df.empty else df
    if done.empty:
        click.echo("(no comparison could be made: " + (df["reason"].iloc[0] if len(df) else "no finished cells") + ")")
        return
    cell = [f"{e:+.3f} [{lo:+.3f}, {hi:+.3f}]" for e, lo, hi in zip(done["effect"], done["ci_lo"], done["ci_hi"])]
    done = done.assign(pair=done["a"] + " - " + done["b"], cell=cell)
    table = done.pivot_table(
        index=["pair", "eval", "group"], columns="step", values="cell", aggfunc="first", sort=False
    )
    click.echo(table.to_string())
    for path in out:
        if path.endswith(".md"):
            write_atomic(path, curve_markdown(rounded(df)))
        elif path.endswith(".csv"):
            with atomic_path(path, ".csv") as tmp:
                rounded(df).to_csv(tmp, index=False)
        click.echo(f"-> {path}")


def _check_step(grid, results: str | None, step: int | None) -> None:
    """--step names a step at which every finished cell was evaluated during training."""
    from toolkit.grid.results import eval_steps

    if step is not None and step not in (steps := eval_steps(grid, results)):
        valid = ", ".join(map(str, steps)) or "none (no cell was evaluated during training: eval.every)"
        raise click.BadParameter(f"{step}: no finished cell was evaluated at it; valid: {valid}", param_hint="--step")


def _data_overrides(items) -> dict[str, str]:
    out = {}
    for item in items:
        task, sep, where = item.partition("=")
        if not sep:
            raise click.BadParameter(f"--data expects TASK=PATH, got {item!r}")
        out[task] = where
    return out


def _print_real_table(grid_file: str, results: str | None, fmt: str) -> None:
    from toolkit.grid.real import format_real_table, load_real_grid, write_real_table

    if fmt == "tex":
        raise click.BadParameter("a real-pairs grid's table is md or csv", param_hint="--format")
    df, path = write_real_table(load_real_grid(grid_file), results)
    click.echo(df.to_csv(index=False) if fmt == "csv" else format_real_table(df))
    click.echo(f"-> {path}")


@grid.command("learnability")
@_grid_options
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the rows as CSV to this file.")
@click.option("--step", type=int, help="Read the cells' evaluations during training at this step (eval.every).")
def grid_learnability_command(
    grid_file: str, scale: str, results: str | None, out: str | None, step: int | None
) -> None:
    """What each arm learned per fact family and channel (experiments/learnability.yaml): means over
    the training seeds of its stored results (with --step, at that training step)."""
    from toolkit.files import atomic_path
    from toolkit.grid.learnability import grid_learnability
    from toolkit.grid.spec import load_grid

    g = load_grid(grid_file, scale)
    _check_step(g, results, step)
    df = grid_learnability(g, results, step=step)
    if df.empty:
        click.echo("(no finished cells with learnability results)")
        return
    table = df.pivot_table(index=["family", "channel", "group"], columns="arm", values="value", sort=False)
    click.echo(table.round(3).to_string())
    if out:
        with atomic_path(out, ".csv") as tmp:
            df.to_csv(tmp, index=False)
        click.echo(f"-> {out}")


@main.group(cls=_Group)
def analyze() -> None:
    """Probing, attribution and attention studies of a run (CSV tables and PNG/PDF figures).

    probe, attention and attribute also read a Hugging Face checkpoint directory (LLaVA, Qwen2-VL, Idefics3,
    a causal LM; give --world)."""


def _world_option(f):
    return click.option(
        "--world",
        type=click.Path(exists=True, file_okay=False),
        help="World directory (default: the run's data.world; needed by imported runs).",
    )(f)


def _analysis_out(run_dir: str, out: str | None, kind: str) -> Path:
    """--out, else RUN_DIR/analysis/KIND; a Hugging Face checkpoint directory is left as it is
    (results/analysis/<its name>/KIND)."""
    from toolkit.families import is_hf_dir

    if out:
        return Path(out)
    if is_hf_dir(run_dir):
        return Path("results") / "analysis" / Path(run_dir).resolve().name / kind
    return Path(run_dir) / "analysis" / kind


@analyze.command("learnability")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out", type=click.Path(file_okay=False), help="Output directory (default: RUN_DIR/analysis/learnability)."
)
def analyze_learnability(run_dir: str, out: str | None) -> None:
    """What the run has learned of each fact family through each channel (experiments/learnability.yaml),
    from its evaluation results; with evaluations during training (eval.every), one column per step."""
    from toolkit.files import atomic_path
    from toolkit.grid.learnability import run_report

    df = run_report(run_dir)
    if df.empty:
        raise click.ClickException(
            f"{run_dir}: no results of the learnability tasks; evaluate them first "
            "(xmt eval RUN_DIR --tasks world, or eval.every during training)"
        )
    target = _analysis_out(run_dir, out, "learnability")
    target.mkdir(parents=True, exist_ok=True)
    with atomic_path(target / "learnability.csv", ".csv") as tmp:
        df.to_csv(tmp, index=False)
    table = df.pivot_table(index=["family", "channel", "group"], columns="step", values="value", sort=False)
    click.echo(table.round(3).to_string())
    click.echo(f"-> {target / 'learnability.csv'}")


@analyze.command("probe")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output directory (default: RUN_DIR/analysis/probe; results/analysis/NAME/probe for a Hugging Face directory).",
)
@_world_option
def analyze_probe(run_dir: str, out: str | None, world: str | None) -> None:
    """Layer-wise probes for colour, size and shape on text and image states, cross-modal and
    grounded->vision-only transfer, with control tasks."""
    from analysis.probing import run_probing

    target = _analysis_out(run_dir, out, "probe")
    df = run_probing(run_dir, target, world=world)
    click.echo(f"{len(df)} probe results -> {target}/probing.csv, probing.png")


@analyze.command("attribute")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output directory (default: RUN_DIR/analysis/attribute; results/analysis/NAME/attribute for a Hugging Face directory).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=12, show_default=True, help="World VQA questions to attribute."
)
@click.option("--steps", type=click.IntRange(min=1), default=32, show_default=True, help="Integration steps.")
@_world_option
def analyze_attribute(run_dir: str, out: str | None, limit: int, steps: int, world: str | None) -> None:
    """Integrated-gradients attribution of VQA answers to image patches vs text tokens."""
    from analysis.attribution import run_attribution

    target = _analysis_out(run_dir, out, "attribute")
    df = run_attribution(run_dir, target, limit, steps, world=world)
    click.echo(f"image share {df['image_share'].mean():.3f} over {len(df)} answers -> {target}/attribution.csv")


@analyze.command("attention")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Output directory (default: RUN_DIR/analysis/attention; results/analysis/NAME/attention for a Hugging Face directory).",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=16, show_default=True, help="World VQA prompts to average over."
)
@_world_option
def analyze_attention(run_dir: str, out: str | None, limit: int, world: str | None) -> None:
    """Text->image attention mass per layer and head, and patch-grid overlays."""
    from analysis.attention import run_attention

    target = _analysis_out(run_dir, out, "attention")
    run_attention(run_dir, target, limit, world=world)
    click.echo(f"attention -> {target}/attention_mass.csv, attention_mass.png, attention_overlays.png")


@analyze.command("transfer")
@click.argument("grid_files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--results", type=click.Path(file_okay=False), help="Results root (default: results/).")
@click.option("--scale", default="tiny", show_default=True)
def analyze_transfer(grid_files, out: str, results: str | None, scale: str) -> None:
    """One table of the grids' arms (mean, 95% CI over seeds) and their paired comparisons."""
    from analysis.transfer import run_transfer

    summary, comp = run_transfer(list(grid_files), out, results, scale)
    click.echo(f"{len(summary)} arm rows, {len(comp)} comparisons -> {out}")


@main.group("import", cls=_Group)
def import_() -> None:
    """Convert checkpoints from other formats into xmt run directories."""


@import_.command("kosmos2")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The run directory to write (new).")
def import_kosmos2_command(hf_dir: str, out: str) -> None:
    """Import a local Kosmos-2 checkpoint in Hugging Face format (config.json, model.safetensors,
    tokenizer.json; e.g. microsoft/kosmos-2-patch14-224 downloaded beforehand) as a run directory that
    `xmt eval`, `xmt analyze` and the notebooks read like a trained run."""
    from toolkit.importers.kosmos2 import CheckpointFormatError, import_kosmos2

    try:
        run = import_kosmos2(hf_dir, out)
    except CheckpointFormatError as err:
        raise click.ClickException(str(err)) from None
    info = json.loads((run / "import.json").read_text())
    click.echo(
        f"imported {hf_dir} -> {run} ({info['text_params']:,} text parameters; "
        f"image placeholder token {info['special_tokens']['image_pad']})"
    )


@main.group(cls=_Group)
def paper() -> None:
    """The paper's tables and figures, rebuilt from stored results."""


@paper.command("build")
@click.option(
    "--results", default="results", show_default=True, type=click.Path(file_okay=False), help="Grid results root."
)
@click.option("--out", default="paper_figures/out", show_default=True, type=click.Path(file_okay=False))
@click.option("--grids", type=click.Path(file_okay=False), help="Grid files directory (default: experiments/paper).")
@click.option("--scale", default="tiny", show_default=True)
@click.option(
    "--analysis",
    type=click.Path(file_okay=False),
    help="Analysis outputs with probe/ and attention/ (default: 'analysis' beside the results root).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Build even when no grid has a finished cell (a warning; our rows marked missing). Default: exit 1.",
)
def paper_build(results: str, out: str, grids: str | None, scale: str, analysis: str | None, allow_empty: bool) -> None:
    """Write every table (Markdown + LaTeX, the paper's rows next to ours) and figure (PNG + PDF, with the
    numbers as CSV); the same results give the same bytes."""
    from paper_figures.build import build_all

    paths = build_all(results, out, grids, scale, echo=click.echo, analysis=analysis, require_results=not allow_empty)
    click.echo(f"{len(paths)} files -> {out}")


@main.command()
@click.option(
    "--scale",
    type=click.Choice(["smoke", "tiny", "half", "calibrated"]),
    default="tiny",
    show_default=True,
    help="Budget: smoke (seconds per cell, for CI), tiny (a laptop CPU, about 20 min on 2 cores with --jobs 2; "
    "15% of the steps at which the learnability gates were found to pass, too few for them to pass), "
    "half (half of every stage's steps, 3 seeds) or calibrated (every stage's steps, 3 seeds, where they pass; "
    "hours on 2 cores).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Grid cells trained at a time (CPU threads are shared out among them).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/reproduce",
    show_default=True,
    help="Output directory (a rerun continues it).",
)
def reproduce(scale: str, out: str, jobs: int) -> None:
    """The main job: model check -> world -> the paper's grids (train + eval) -> analysis -> paper tables
    and figures, then the artifacts and the headline transfer effects. Resumable: a rerun continues."""
    from toolkit.commands.reproduce import run_reproduce

    ok = run_reproduce(scale=scale, out=out, echo=click.echo, jobs=jobs)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
