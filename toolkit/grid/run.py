"""Running a grid: each cell trains (resuming a half-finished run) and is evaluated; its state is
recorded in `<results>/<cell id>/status.json` (running | done | failed, with the traceback |
interrupted). Ctrl-C (or SIGTERM) stops a grid: queued cells do not start, training cells stop after
their current step with a checkpoint, and the next `grid run` resumes them.

Training is shared: a cell's run lives in `<results root>/runs/<training key>/`, the key hashing the
resolved training config without its name, logging and threads, and `<cell>/run` links to it. Cells
of any grid that train the same thing (the MLLM arm of several paper grids, say) train it once and
are each evaluated on their own tasks into `<cell>/eval/`. A lock file serialises cells that need
the same run at the same time. A new run whose first stages are another finished run (pretraining,
then instruction tuning) starts from that run's last checkpoint instead of training them again;
resuming is exact, so the result is the same as training from scratch.

Executors: `local` (a pool of N worker processes, each with its share of CPU threads; N=1 runs in
this process), `submitit-local` (submitit's local executor) and `slurm` (submitit on a cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml

from toolkit.config import ConfigError, to_dict
from toolkit.files import read_json, write_atomic
from toolkit.grid.spec import Cell, Grid, identity_dict
from toolkit.train.precision import resolve_device, resolve_precision
from toolkit.train.rundir import CONFIG_FILE, ENV_FILE

EXECUTORS = ("local", "submitit-local", "slurm")

# In a pool worker: set when the grid is being stopped (see _init_worker)
_STOP = None
NOT_STARTED = "not started"  # what run_cell returns for a cell it left alone because the grid is stopping


class GridInterrupted(Exception):
    """The grid was stopped (Ctrl-C, SIGTERM); its unfinished cells resume on the next `grid run`."""


def results_dir(grid: Grid, results: str | os.PathLike | None = None) -> Path:
    root = Path(results) if results else Path("results")
    return root / (grid.name if grid.scale == "tiny" else f"{grid.name}-{grid.scale}")


def read_status(cell_dir: Path) -> dict:
    """A cell's status.json; a cell recorded as running whose process is gone (same host, no such
    pid: killed, or its machine restarted) reads as `interrupted`, which `grid run` resumes."""
    path = cell_dir / "status.json"
    status = read_json(path) if path.is_file() else {"state": "pending"}
    if status["state"] == "running" and status.get("host") == socket.gethostname() and not _alive(status.get("pid")):
        status = {**status, "state": "interrupted"}
    return status


def _alive(pid: int | None) -> bool:
    """Whether the process runs: it exists and is not a zombie (exited, not yet reaped)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process holds the pid
        return True
    try:  # Linux: the state letter follows the command name in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write_status(cell_dir: Path, status: dict) -> None:
    cell_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(cell_dir / "status.json", json.dumps(status, indent=1) + "\n")


def weights_identity(cfg) -> dict:
    """A run's identity (toolkit.grid.spec.identity_dict) without name, logging and threads."""
    d = identity_dict(cfg)
    for key in ("name", "logging", "threads"):
        d.pop(key, None)
    return d


def key_digest(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def training_key(cfg, precision: str | None = None) -> str:
    """Hash of what determines a run's weights: `weights_identity`, with the precision it trains in
    (`precision: auto` resolved on this machine: bf16 on one CPU, fp32 on another, or `precision`
    when given: a stored run's); for the text-only arm (`vision.kind: none`) no vision tower or
    resampler settings, which it never builds."""
    d = weights_identity(cfg)
    d["precision"] = precision or resolve_precision(cfg.precision, resolve_device(cfg.device))
    if not cfg.model.vision.enabled:
        d["model"]["vision"] = {"kind": cfg.model.vision.kind}
        d["model"].pop("resampler", None)
    return key_digest(d)


def replace_link(path: Path, target: str) -> None:
    """Make `path` a symbolic link to `target` in one step (a link beside it, renamed over it)."""
    tmp = path.with_name(path.name + ".tmp-link")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(path)


def shared_run(cell_dir: Path, key: str) -> Path:
    """`<cell>/run` as a link to `<results root>/runs/<key>` (relative, so the results tree can move)."""
    runs = cell_dir.parent.parent / "runs"
    target = runs / key
    target.mkdir(parents=True, exist_ok=True)
    link = cell_dir / "run"
    if link.is_symlink() and link.resolve() == target.resolve():
        return link
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        return link  # a run trained inside the cell directory (an older layout): used as it is
    replace_link(link, os.path.relpath(target, cell_dir))
    return link


def seed_from_prefix(cfg, run: Path, runs_root: Path) -> Path | None:
    """Start `run` (new, several stages) from the finished run of its longest stage prefix, if any:
    that run's resolved config with this run's stages, its last checkpoint and its metrics (the
    caller resumes it through `relocate`, which puts this cell's world and tower paths in it)."""
    from toolkit.train import checkpoint as ckpt

    for j in range(len(cfg.stages) - 1, 0, -1):
        source = runs_root / training_key(dataclasses.replace(cfg, stages=cfg.stages[:j]))
        last = ckpt.latest_checkpoint(source) if (source / CONFIG_FILE).is_file() else None
        if last is None or ckpt.read_state(last)["step"] != sum(s.steps for s in cfg.stages[:j]):
            continue
        resolved = yaml.safe_load((source / CONFIG_FILE).read_text())
        mine = to_dict(cfg)
        resolved.update({key: mine[key] for key in ("name", "stages", "logging", "threads")})
        tmp = run / "checkpoints" / (last.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(last, tmp)
        tmp.rename(run / "checkpoints" / last.name)
        for name in ("metrics.jsonl", ENV_FILE):
            if (source / name).is_file():
                shutil.copyfile(source / name, run / name)
        write_atomic(run / CONFIG_FILE, yaml.safe_dump(resolved, sort_keys=False))  # last: a run with a config resumes
        return source
    return None


def relocate(stored, cfg, run: Path):
    """A shared run's stored config with the world and tower paths of the cell that uses it now: the
    training key says they are the same world and tower, but the run may have been trained with
    them elsewhere (a results tree moved, another working directory). The run's config.yaml is
    rewritten with them, so that its evaluation and every later reader find them."""
    from toolkit.train.tower import with_tower

    vision = dataclasses.replace(stored.model.vision, path=cfg.model.vision.path)
    moved = with_tower(
        dataclasses.replace(
            stored,
            data=dataclasses.replace(stored.data, world=cfg.data.world),
            model=dataclasses.replace(stored.model, vision=vision),
        )
    )
    if to_dict(moved) != to_dict(stored):
        write_atomic(run / CONFIG_FILE, yaml.safe_dump(to_dict(moved), sort_keys=False))
    return moved


@dataclasses.dataclass
class CellJob:
    """Everything one cell needs, as plain data (a pool or submitit pickles it to the worker)."""

    cell: Cell
    cell_dir: str
    tasks: list[str]
    shots: list[int]
    trials: int
    eval_limit: int | None
    ablations: list[str]
    data: dict[str, str]
    threads: int = 0


def run_cell(job: CellJob) -> dict:
    """Train and evaluate one cell; a half-finished run resumes from its checkpoint."""
    from toolkit.eval.runner import evaluate, evaluator
    from toolkit.train.loop import TrainingInterrupted, run_training
    from toolkit.train.rundir import load_run
    from toolkit.train.tower import with_tower
    from toolkit.world.build import ensure_world

    cell, cell_dir = job.cell, Path(job.cell_dir)
    stop_when = _STOP.is_set if _STOP is not None else None
    if stop_when is not None and stop_when():  # queued before the grid was stopped: left for the next run
        return {"state": NOT_STARTED}
    status = {
        "state": "running",
        "cell": cell.id,
        "arm": cell.arm,
        "label": cell.label,
        "seed": cell.seed,
        "overrides": cell.overrides,
        "started": time.time(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    _write_status(cell_dir, status)
    try:
        cfg = cell.config
        cfg = dataclasses.replace(
            cfg, threads=job.threads or cfg.threads, logging=dataclasses.replace(cfg.logging, progress=False)
        )
        key = training_key(cell.config)
        status["training_key"] = key
        run = shared_run(cell_dir, key)
        with open(cell_dir.parent.parent / "runs" / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one process trains a shared run; the others wait, then reuse it
            if not (run / CONFIG_FILE).is_file():
                seeded = seed_from_prefix(cfg, run, cell_dir.parent.parent / "runs")
                if seeded is not None:
                    status["started_from"] = seeded.name
            ensure_world(cfg.data.world, cfg.data.world_preset, cfg.data.world_seed, cfg.data.world_overrides)
            resume = (run / CONFIG_FILE).is_file()
            cfg = relocate(load_run(run), cfg, run) if resume else with_tower(cfg)
            run_training(cfg, run, resume=resume, evaluate=evaluator(cfg, run), stop_when=stop_when)
        if stop_when is not None and stop_when():
            raise TrainingInterrupted("stopped after its training, before its evaluation")
        if job.tasks:
            evaluate(
                run,
                job.tasks,
                job.shots,
                job.trials,
                job.eval_limit,
                job.ablations,
                data=job.data,
                out=cell_dir / "eval",
                echo=lambda s: None,
            )
        status.update(state="done", finished=time.time())
    except (TrainingInterrupted, KeyboardInterrupt) as err:
        step = getattr(err, "step", None)
        message = str(err) if step is None else f"stopped after step {step} with a checkpoint"
        status.update(
            state="interrupted", finished=time.time(), message=f"{message or 'interrupted'}; grid run resumes it"
        )
        if isinstance(err, KeyboardInterrupt):  # a second Ctrl-C, or one outside training: stop now
            _write_status(cell_dir, status)
            raise
    except Exception:
        status.update(state="failed", finished=time.time(), traceback=traceback.format_exc())
    _write_status(cell_dir, status)
    return status


def run_grid(
    grid: Grid,
    results: str | os.PathLike | None = None,
    jobs: int = 1,
    executor: str = "local",
    retry_failed: bool = False,
    echo: Callable[[str], None] = print,
    slurm: dict | None = None,
    heartbeat: float = 60.0,
) -> dict[str, str]:
    """Run every cell that is not done (failed ones only with retry_failed), seed by seed (every arm's
    first seed, then the next); returns cell id -> state.
    Progress goes to `echo`: each finished cell, and the training cells' steps every `heartbeat` s."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    from toolkit.grid.migrate import adopt_runs

    out = results_dir(grid, results)
    out.mkdir(parents=True, exist_ok=True)
    cells = grid.cells()
    _write_plan(grid, cells, out)
    adopt_runs(grid, out, echo)
    todo: list[Cell] = []
    for cell in cells:
        state = read_status(out / cell.id)["state"]
        if state == "done" or (state == "failed" and not retry_failed):
            echo(f"{cell.id} {cell.label} seed={cell.seed}: {state}, skipped")
        else:
            todo.append(cell)
    if todo and executor != "slurm":  # slurm: `auto` resolves on the nodes, not here
        check_precision(cells, out)
    # Seed by seed (every arm's first seed, then the next): a grid stopped part-way has whole seeds to compare.
    seeds = list(dict.fromkeys(c.seed for c in cells))
    todo.sort(key=lambda c: seeds.index(c.seed))
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    spec, tasks = grid.spec, grid.eval_tasks()
    args = [
        CellJob(
            c,
            str((out / c.id).resolve()),
            tasks,
            list(spec.shots),
            spec.trials,
            spec.eval_limit,
            list(spec.ablations),
            grid.data,
            threads if jobs > 1 else 0,
        )
        for c in todo
    ]
    progress = Progress(todo, out, echo, heartbeat)
    if todo and executor != "slurm" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        echo(
            "Ctrl-C does not reach this grid (SIGINT is ignored here, as in a background job); "
            f"stop it with `kill -TERM {os.getpid()}`"
        )
    completed = True
    if executor == "local" and jobs <= 1:
        try:
            with _on_sigterm(_term_as_ctrl_c):
                for a, cell in zip(args, todo):
                    state = run_cell(a)["state"]
                    progress.finished(cell, state)
                    if state == "interrupted":  # Ctrl-C during training: the trainer stopped, so does the grid
                        completed = False
                        break
        except KeyboardInterrupt:  # outside training
            completed = False
    elif executor == "local":
        completed = _run_pool(args, todo, jobs, progress)
    else:
        import submitit

        folder = out / "submitit"
        try:
            if executor == "slurm":
                ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
                ex.update_parameters(**(slurm or {}))
            else:
                ex = submitit.LocalExecutor(folder=str(folder))
                ex.update_parameters(timeout_min=(slurm or {}).get("timeout_min", 60))
            jobs_ = [ex.submit(run_cell, a) for a in args]
        except (RuntimeError, TypeError, ValueError) as err:  # no cluster here, or a parameter it does not take
            progress.close()
            raise ConfigError(f"--executor {executor}: {str(err).splitlines()[0]}") from err
        for cell, job in zip(todo, jobs_):
            progress.finished(cell, job.result()["state"])
    progress.close()
    states = {c.id: read_status(out / c.id)["state"] for c in cells}
    if not completed:
        left = sum(s not in ("done", "failed") for s in states.values())
        raise GridInterrupted(f"{left} of {len(cells)} cells not done; run the same command again to resume them")
    return states


def check_precision(cells: list[Cell], out: Path) -> None:
    """A grid's runs train in one precision: when a cell with `precision: auto` would train here in
    another precision than a trained run of the same grid (a machine with native bf16 after one
    without, or the reverse), the grid is refused, with the setting that trains the rest alike."""
    here = {resolve_precision("auto", resolve_device(c.config.device)) for c in cells if c.config.precision == "auto"}
    for cell in cells:
        config = out / cell.id / "run" / CONFIG_FILE
        stored = yaml.safe_load(config.read_text()).get("precision") if config.is_file() else None
        if stored and here - {stored}:
            other = min(here - {stored})
            raise ConfigError(
                f"{out / cell.id}: its run trained in {stored}, but precision: auto trains in {other} on this "
                f"machine, and a grid's runs must share one precision: add `precision: {stored}` to the grid's "
                "overrides (trained runs are kept, their cells evaluated again)"
            )


def _init_worker(parent: int, stop) -> None:
    """A pool worker's initializer. The worker ends when the grid's process is gone (killed), so no
    cell trains on unwatched; its status then reads interrupted and the next `grid run` resumes it.
    The grid stops its workers through `stop` (an Event): Ctrl-C at a terminal reaches the workers
    too, and they leave it to the grid's process between cells and during evaluation."""
    global _STOP
    _STOP = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _on_sigterm(handler):
    """`handler` takes SIGTERM inside the block (outside the main thread signals are left alone)."""
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _term_as_ctrl_c(signum, frame) -> None:
    """SIGTERM to a one-process grid does what Ctrl-C does: the handler SIGINT has now (a training
    run's, which stops after its step with a checkpoint) runs; without one it interrupts at once."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _run_pool(args: list[CellJob], todo: list[Cell], jobs: int, progress: Progress) -> bool:
    """The cells in a pool of `jobs` processes; returns False when the grid was stopped (Ctrl-C or
    SIGTERM): queued cells are not started, training cells stop after their step with a checkpoint."""
    # spawn, not fork: a forked torch process can deadlock in its thread pools
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    pool = ProcessPoolExecutor(jobs, ctx, initializer=_init_worker, initargs=(os.getpid(), stop))
    with _on_sigterm(_raise_interrupt), pool:
        futures = {pool.submit(run_cell, a): cell for a, cell in zip(args, todo)}
        pending = set(futures)
        try:
            for future in as_completed(futures):  # reported as each finishes, not in submission order
                pending.discard(future)
                progress.finished(futures[future], future.result()["state"])
        except KeyboardInterrupt:
            stop.set()
            progress.echo("stopping: the training cells save a checkpoint after their current step")
            for future in pending:
                future.cancel()
            for future in as_completed([f for f in pending if not f.cancelled()]):
                state = future.result()["state"]
                if state != NOT_STARTED:
                    progress.finished(futures[future], state)
    return not stop.is_set()


class Progress:
    """A grid's progress as it runs: each finished cell with the count and an estimate of the time
    left (from the training steps taken since the start and those still to take, so a cell whose
    shared run was already trained does not shorten it; none before the first steps), and every
    `heartbeat` seconds the steps of the cells still training (read from their runs' metrics.jsonl;
    0 turns it off). A cell's run is
    read where it is shared (`<results>/runs/<training key>`) when the cell has no run yet, so a run
    another study trained counts as trained before the start."""

    def __init__(self, todo: list[Cell], out: Path, echo: Callable[[str], None], heartbeat: float) -> None:
        self.todo, self.out, self.echo, self.done = todo, out, echo, 0
        self.shared = {cell.id: out.parent / "runs" / training_key(cell.config) for cell in todo}
        self.start = time.time()
        self.begin = {cell.id: self.step(cell) or 0 for cell in todo}
        self.ended: set[str] = set()
        self.stop = threading.Event()
        self.thread = None
        if heartbeat > 0 and todo:
            self.thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True)
            self.thread.start()

    def finished(self, cell: Cell, state: str) -> None:
        self.done += 1
        self.ended.add(cell.id)
        elapsed = time.time() - self.start
        taken = remaining = 0
        for c in self.todo:
            now = min(self.step(c) or self.begin[c.id], c.config.total_steps)
            taken += max(0, now - self.begin[c.id])
            remaining += 0 if c.id in self.ended else c.config.total_steps - now
        # no estimate before the first training steps (cells so far only evaluated: they say nothing
        # of how long a training cell takes)
        eta = f"; about {elapsed * remaining / taken:.0f} s left" if taken and self.done < len(self.todo) else ""
        self.echo(
            f"[{self.done}/{len(self.todo)}] {cell.id} {cell.label} seed={cell.seed}: {state} ({elapsed:.0f} s{eta})"
        )

    def step(self, cell: Cell) -> int | None:
        """The last step the cell's run logged: 0 before any, None while a line is being written."""
        metrics = self.out / cell.id / "run" / "metrics.jsonl"
        if not metrics.is_file():
            metrics = self.shared[cell.id] / "metrics.jsonl"
        if not metrics.is_file():
            return 0
        last = metrics.read_text().strip().rsplit("\n", 1)[-1]
        try:
            return int(json.loads(last)["step"]) if last else 0
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def running(self) -> list[str]:
        """'cell: step s/total' of every cell whose status is running."""
        lines = []
        for cell in self.todo:
            if read_status(self.out / cell.id)["state"] != "running":
                continue
            step = self.step(cell)
            shown = "?" if step is None else step
            lines.append(f"{cell.id} {cell.label} seed={cell.seed}: step {shown}/{cell.config.total_steps}")
        return lines

    def _beat(self, every: float) -> None:
        while not self.stop.wait(every):
            for line in self.running():
                self.echo(f"  running {line}")

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _write_plan(grid: Grid, cells: list[Cell], out: Path) -> None:
    plan = {
        "grid": str(grid.path),
        "scale": grid.scale,
        "question": grid.spec.question,
        "mirrors": grid.spec.mirrors,
        "cells": [
            {"id": c.id, "arm": c.arm, "label": c.label, "seed": c.seed, "overrides": c.overrides} for c in cells
        ],
    }
    write_atomic(out / "plan.json", json.dumps(plan, indent=1) + "\n")


def grid_status(grid: Grid, results: str | os.PathLike | None = None) -> list[dict]:
    out = results_dir(grid, results)
    rows = []
    for cell in grid.cells():
        status = read_status(out / cell.id)
        rows.append(
            {
                "id": cell.id,
                "label": cell.label,
                "seed": cell.seed,
                "state": status["state"],
                # why it stopped: a failed cell's error, an interrupted one's message (where it stopped)
                "error": status["traceback"].strip().splitlines()[-1]
                if status.get("traceback")
                else status.get("message", ""),
            }
        )
    return rows
