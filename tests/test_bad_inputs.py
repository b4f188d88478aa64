"""Every bad input a user can give ends in one line naming what is wrong and what is valid, exit code 1
(2 for a malformed command line), and no traceback; XMT_DEBUG=1 shows the traceback instead."""

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import run_dict

from toolkit.cli import main


class Case:
    """One bad input: `setup(ws)` writes what it needs under the workspace and returns the argv."""

    def __init__(self, name, setup, message, code=1):
        self.name, self.setup, self.message, self.code = name, setup, message, code

    def __repr__(self) -> str:
        return self.name


class Workspace:
    """Files the cases share: the small world, a finished run, and a scratch directory per case."""

    def __init__(self, world: Path, run: Path, root: Path):
        self.world, self.run, self.root = world, run, root

    def config(self, name="run.yaml", edit=None, raw=None) -> str:
        path = self.root / name
        if raw is not None:
            path.write_text(raw)
            return str(path)
        data = copy.deepcopy(run_dict(self.world, steps=2))  # its nested parts are shared module constants
        if edit:
            edit(data)
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def train(self, edit=None, *overrides) -> list[str]:
        return ["train", self.config(edit=edit), *overrides, "--out", str(self.root / "out")]

    def run_copy(self, edit_config=None) -> Path:
        copy = self.root / "run"
        shutil.copytree(self.run, copy, symlinks=True)
        if edit_config:
            cfg = yaml.safe_load((copy / "config.yaml").read_text())
            edit_config(cfg)
            (copy / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        return copy

    def file(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return str(path)

    def grid(self, **fields) -> str:
        base = self.config("base.yaml")
        grid = {"question": "q?", "base": Path(base).name, "seeds": [0], "tasks": [], **fields}
        return self.file("grid.yaml", yaml.safe_dump(grid))

    def eval(self, *args) -> list[str]:
        return ["eval", str(self.run), "--out", str(self.root / "eval"), *args]


def _set(path: str, value):
    def edit(data):
        keys, node = path.split("."), data
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value

    return edit


class _Evil:
    """A pickle that would run a shell command when loaded: it would create `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _plant_pickle(ws: Workspace) -> list[str]:
    run = ws.run_copy()
    (checkpoint,) = sorted((run / "checkpoints").iterdir())
    torch.save({"optimizer": _Evil(ws.root / "pwned"), "rng": {}}, checkpoint / "trainer.pt")
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest.pop("trainer.pt")  # the manifest does not vouch for it: refused by what it holds
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    return ["train", "--resume", str(run)]


def _truncate_only_checkpoint(ws: Workspace) -> list[str]:
    run = ws.run_copy()
    (checkpoint,) = sorted((run / "checkpoints").iterdir())
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return ["eval", str(run), "--tasks", "world-colour", "--limit", "2"]


def _corrupt_shard(ws: Workspace) -> str:
    """The world's first pairs shard with every image replaced by bytes that are not an image."""
    from toolkit.data.shards import ShardWriter, iter_tar

    shard = sorted((ws.world / "pairs").glob("*.tar"))[0]
    with ShardWriter(ws.root / "bad", "pairs", max_samples=100_000) as writer:
        for key, sample in iter_tar(shard):
            writer.write(key, {k: b"not an image" if k.endswith("png") else v for k, v in sample.items()})
    return str(ws.root / "bad" / "*.tar")


def _garbled_world(ws: Workspace) -> str:
    shutil.copytree(ws.world, ws.root / "world")
    (ws.root / "world" / "world.json").write_text("{")
    return str(ws.root / "world")


def _drop_trainer_state(ws: Workspace) -> Path:
    run = ws.run_copy()
    for checkpoint in (run / "checkpoints").iterdir():
        (checkpoint / "trainer.pt").unlink()
    return run


def _garble_config(ws: Workspace) -> Path:
    run = ws.run_copy()
    (run / "config.yaml").write_text("a: [\n")
    return run


def _out_not_empty(ws: Workspace) -> list[str]:
    ws.file("out/keep.txt", "x")
    return ws.train()


CASES = [
    # ---- run configs
    Case("config file missing", lambda ws: ["train", str(ws.root / "nope.yaml"), "--out", "x"], r"nope.yaml"),
    Case("config not YAML", lambda ws: ["train", ws.config(raw="a: [1, 2\n"), "--out", "x"], r"run.yaml"),
    Case("config not a mapping", lambda ws: ["train", ws.config(raw="- 1\n"), "--out", "x"], r"expected a mapping"),
    Case("unknown top-level key", lambda ws: ws.train(_set("bogus", 1)), r"unknown config key 'bogus'"),
    Case("unknown nested key", lambda ws: ws.train(_set("model.decoder.bogus", 1)), r"model\.decoder\.bogus"),
    Case("wrong type", lambda ws: ws.train(_set("stages.0.steps", "many")), r"stages.*steps"),
    Case("zero steps", lambda ws: ws.train(_set("stages.0.steps", 0)), r"steps must be >= 1, got 0"),
    Case("unknown schedule", lambda ws: ws.train(_set("stages.0.schedule", "wavy")), r"schedule: unknown value"),
    Case("unknown precision", lambda ws: ws.train(_set("precision", "fp8")), r"precision: unknown value 'fp8'"),
    Case("unknown device", lambda ws: ws.train(_set("device", "tpu")), r"device: unknown value 'tpu'"),
    Case("unknown loss weighting", lambda ws: ws.train(_set("optim.loss_weighting", "x")), r"loss_weighting"),
    Case("unknown strategy", lambda ws: ws.train(_set("distributed.strategy", "x")), r"distributed.strategy"),
    Case("cuda without a GPU", lambda ws: ws.train(_set("device", "cuda")), r"no CUDA GPU is available"),
    Case("unknown model preset", lambda ws: ws.train(_set("model_preset", "huge")), r"model preset 'huge'"),
    Case("unknown norm", lambda ws: ws.train(_set("model.decoder.norm", "x")), r"decoder.norm: unknown value"),
    Case("unknown positions", lambda ws: ws.train(_set("model.decoder.positions", "x")), r"'x'.*valid|available"),
    Case("unknown attention", lambda ws: ws.train(_set("model.decoder.attention", "x")), r"attention"),
    Case("heads do not divide dim", lambda ws: ws.train(_set("model.decoder.heads", 5)), r"not divisible by"),
    Case("vocabulary too small", lambda ws: ws.train(_set("model.decoder.vocab_size", 10)), r"vocab_size=10"),
    Case("unknown vision kind", lambda ws: ws.train(_set("model.vision.kind", "x")), r"vision tower 'x'"),
    Case("unknown vision stem", lambda ws: ws.train(_set("model.vision.stem", "x")), r"vision.stem"),
    Case(
        "conv stem, odd patch",
        lambda ws: ws.train(_set("model.vision.stem", "conv"), "model.vision.patch_size=6"),
        r"power-of-2",
    ),
    Case("image size vs patch", lambda ws: ws.train(_set("model.vision.patch_size", 5)), r"not divisible by"),
    Case(
        "too many latents",
        lambda ws: ws.train(_set("model.resampler", {"kind": "mean", "num_latents": 20})),
        r"num_latents=20 exceeds the 16 vision tokens",
    ),
    Case(
        "pretrain of a CLIP tower",
        lambda ws: ws.train(_set("model.vision", {"kind": "clip", "pretrain": {"steps": 5}})),
        r"vision.pretrain.steps=5 needs vision.kind: vit",
    ),
    Case(
        "tower path without tower",
        lambda ws: ws.train(_set("model.vision.path", str(ws.root / "t"))),
        r"no tower.safetensors there",
    ),
    Case(
        "stream without files",
        lambda ws: ws.train(_set("data.streams.0.paths", [str(ws.root / "no/*.jsonl")])),
        r"stream 'text': no file matches",
    ),
    Case("stream of unknown kind", lambda ws: ws.train(_set("data.streams.0.kind", "x")), r"unknown kind 'x'"),
    Case("duplicate stream names", lambda ws: ws.train(_set("data.streams.1.name", "text")), r"must be unique"),
    Case(
        "stream batch size 0",
        lambda ws: ws.train(_set("data.streams.0.batch_size", 0)),
        r"batch_size must be >= 1, got 0",
    ),
    Case(
        "stream batch size negative",
        lambda ws: ws.train(_set("data.streams.0.batch_size", -2)),
        r"batch_size must be >= 1",
    ),
    Case("max_len too small", lambda ws: ws.train(_set("data.max_len", 6)), r"data.max_len=6 cannot hold"),
    Case("tokenizer missing", lambda ws: ws.train(_set("data.tokenizer", str(ws.root / "tok.json"))), r"tok.json"),
    Case("world built otherwise", lambda ws: ws.train(_set("data.world_seed", 3)), r"built with other settings"),
    Case("unknown world override", lambda ws: ws.train(_set("data.world_overrides", {"x": 1})), r"world.x|'x'"),
    Case("override without =", lambda ws: ws.train(None, "stages.0.steps"), r"stages.0.steps"),
    Case("training seed negative", lambda ws: ws.train(_set("seed", -1)), r"seed=-1, data.world_seed=0: valid"),
    Case(
        "override value not YAML", lambda ws: ws.train(None, "stages=[{"), r"override 'stages=\[\{': its value is not"
    ),
    Case("override of unknown key", lambda ws: ws.train(None, "optim.bogus=1"), r"optim.bogus"),
    Case("out not empty", _out_not_empty, r"exists and is not empty"),
    Case("resume with config", lambda ws: ["train", ws.config(), "--resume", str(ws.run)], r"takes no CONFIG", 2),
    Case("resume a non-run", lambda ws: ["train", "--resume", str(ws.root)], r"not a run directory"),
    Case(
        "resume, layers changed",
        lambda ws: ["train", "--resume", str(ws.run_copy(_set("model.decoder.layers", 3)))],
        r"model.decoder.layers: 2 -> 3",
    ),
    Case(
        "resume, lr changed",
        lambda ws: ["train", "--resume", str(ws.run_copy(_set("stages.0.lr", 0.1)))],
        r"stages.0.lr",
    ),
    Case("resume, planted pickle", _plant_pickle, r"refused to load: it would build .*system"),
    Case("stages empty", lambda ws: ws.train(_set("stages", [])), r"a run needs at least one stage"),
    Case("lr negative", lambda ws: ws.train(_set("stages.0.lr", -1)), r"valid: lr > 0"),
    Case("threads negative", lambda ws: ws.train(_set("threads", -3)), r"threads=-3: valid: 0"),
    Case("dim negative", lambda ws: ws.train(_set("model.decoder.dim", -4)), r"decoder.dim=-4: must be >= 1"),
    Case(
        "tokenizer truncated",
        lambda ws: ws.train(_set("data.tokenizer", ws.file("t.json", '{"version": "1.0",'))),
        r"t.json: not a readable tokenizer.json",
    ),
    Case(
        "evaluation during training, unknown task",
        lambda ws: ws.train(_set("eval", {"every": 1, "tasks": ["x"]})),
        r"unknown task 'x'",
    ),
    Case(
        "resume, no complete checkpoint",
        lambda ws: ["train", "--resume", str(_drop_trainer_state(ws))],
        r"no checkpoint of the run is complete .*trainer.pt missing",
    ),
    Case("vision image size 0", lambda ws: ws.train(_set("model.vision.image_size", 0)), r"vision.image_size=0"),
    Case("grad_accum 0", lambda ws: ws.train(_set("optim.grad_accum", 0)), r"grad_accum >= 1"),
    Case("checkpoint every 0", lambda ws: ws.train(_set("checkpoint.every", 0)), r"checkpoint.every=0"),
    Case("logging every 0", lambda ws: ws.train(_set("logging.every", 0)), r"logging.every=0"),
    Case("betas of one number", lambda ws: ws.train(_set("optim.betas", [0.9])), r"optim.betas=\[0.9\]"),
    Case("max_images 0", lambda ws: ws.train(_set("data.max_images", 0)), r"data.max_images=0"),
    Case(
        "every image corrupt",
        lambda ws: ws.train(_set("data.streams.1.paths", [_corrupt_shard(ws)])),
        r"stream 'pairs': a whole pass over its files gave no sequence \(skipped: \d+ x corrupt image\)",
    ),
    Case(
        "world.json not JSON",
        lambda ws: ws.train(_set("data.world", _garbled_world(ws))),
        r"world.json: not valid JSON",
    ),
    Case(
        "world dir holds no world",
        lambda ws: ws.train(_set("data.world", str(Path(ws.file("nw/a.txt", "x")).parent))),
        r"exists but holds no world",
    ),
    # ---- worlds
    Case(
        "unknown world preset",
        lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--preset", "x"],
        r"world preset 'x'",
    ),
    Case("unknown world key", lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--set", "bogus=1"], r"bogus"),
    Case(
        "world switch out of range",
        lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--set", "noun_first_fraction=2"],
        r"noun_first_fraction",
    ),
    Case(
        "world seed negative", lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--seed", "-1"], r"--seed", 2
    ),
    Case(
        "world count negative",
        lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--set", "counts.text=-5"],
        r"world.counts.text=-5",
    ),
    Case(
        "world leakage above 1",
        lambda ws: ["world", "build", "--out", str(ws.root / "w"), "--set", "leakage.vision_only_caption=1.5"],
        r"a probability, expected in \[0, 1\]",
    ),
    Case("world exists", lambda ws: ["world", "build", "--out", str(ws.world)], r"exists"),
    # ---- evaluation
    Case("limit 0", lambda ws: ws.eval("--limit", "0"), r"--limit", 2),
    Case("limit negative", lambda ws: ws.eval("--limit", "-1"), r"--limit", 2),
    Case("shots negative", lambda ws: ws.eval("--shots", "-1"), r"shots=\[-1\]"),
    Case("shots not numbers", lambda ws: ws.eval("--shots", "a,b"), r"comma-separated integers", 2),
    Case("trials 0", lambda ws: ws.eval("--trials", "0"), r"--trials", 2),
    Case("unknown ablation", lambda ws: ws.eval("--ablations", "bogus"), r"ablations=bogus: valid: none"),
    Case("unknown task", lambda ws: ws.eval("--tasks", "bogus"), r"task 'bogus'"),
    Case("batch size 0", lambda ws: ws.eval("--batch-size", "0"), r"--batch-size", 2),
    Case("data without =", lambda ws: ws.eval("--data", "memorycolor"), r"TASK=PATH", 2),
    Case(
        "data for a task not evaluated",
        lambda ws: ws.eval("--tasks", "world-colour", "--data", "memorycolor=x.csv"),
        r"memorycolor: not among the tasks evaluated",
        2,
    ),
    Case(
        "data file missing",
        lambda ws: ws.eval("--tasks", "memorycolor", "--data", f"memorycolor={ws.root / 'm.csv'}"),
        r"m.csv not found",
    ),
    Case(
        "MemoryColor malformed",
        lambda ws: ws.eval("--tasks", "memorycolor", "--data", "memorycolor=" + ws.file("m.csv", "a,b\n1,2\n")),
        r"m.csv: no valid records",
    ),
    Case(
        "MemoryColor not text",
        lambda ws: ws.eval(
            "--tasks", "memorycolor", "--data", "memorycolor=" + ws.file("m.csv", b"\xff\xfe\x00\x81" * 50)
        ),
        r"m.csv: not readable as memorycolor data",
    ),
    Case(
        "RelativeSize malformed",
        lambda ws: ws.eval("--tasks", "relativesize", "--data", "relativesize=" + ws.file("s.txt", "one two three\n")),
        r"s.txt: no valid records",
    ),
    Case(
        "world task file empty",
        lambda ws: ws.eval("--tasks", "world-colour", "--data", "world-colour=" + ws.file("c.jsonl", "")),
        r"c.jsonl: no valid records",
    ),
    Case("eval, run config not YAML", lambda ws: ["eval", str(_garble_config(ws))], r"config.yaml: not valid YAML"),
    Case("eval on a missing GPU", lambda ws: ws.eval("--device", "cuda"), r"device=cuda: no CUDA GPU"),
    Case("eval on an unknown device", lambda ws: ws.eval("--device", "tpu"), r"device=tpu: not a torch device"),
    Case("eval seed negative", lambda ws: ws.eval("--seed", "-2"), r"--seed", 2),
    Case("eval without tasks", lambda ws: ws.eval("--tasks", ""), r"no task names given", 2),
    Case("eval a non-run", lambda ws: ["eval", str(ws.root)], r"neither a run directory"),
    Case("eval, checkpoint truncated", _truncate_only_checkpoint, r"no checkpoint to read \(none is complete\)"),
    # ---- grids, analysis, paper, import
    Case(
        "grid file empty", lambda ws: ["grid", "plan", ws.file("g.yaml", "")], r"missing required keys question, base"
    ),
    Case("grid without seeds", lambda ws: ["grid", "plan", ws.grid(seeds=[])], r"at least one seed"),
    Case("grid unknown key", lambda ws: ["grid", "plan", ws.grid(bogus=1)], r"grid.bogus"),
    Case(
        "grid base missing",
        lambda ws: ["grid", "plan", ws.file("g.yaml", "question: q\nbase: none.yaml\n")],
        r"none.yaml",
    ),
    Case("grid compare not a pair", lambda ws: ["grid", "plan", ws.grid(compare=[["name=a"]])], r"compare"),
    Case(
        "grid on slurm without a cluster",
        lambda ws: ["grid", "run", ws.grid(), "--results", str(ws.root / "r"), "--executor", "slurm"],
        r"--executor slurm: ",
    ),
    Case("grid jobs 0", lambda ws: ["grid", "run", ws.grid(), "--jobs", "0"], r"--jobs", 2),
    Case("attribute steps 0", lambda ws: ["analyze", "attribute", str(ws.run), "--steps", "0"], r"--steps", 2),
    Case(
        "paper build, no results",
        lambda ws: ["paper", "build", "--results", str(ws.root / "r"), "--out", str(ws.root / "o")],
        r"no finished grid cells",
    ),
    Case(
        "import from a file",
        lambda ws: ["import", "kosmos2", ws.file("f.txt", "x"), "--out", str(ws.root / "k")],
        r"f.txt",
        2,
    ),
]


@pytest.fixture(scope="module")
def finished_run(random_run, tmp_path_factory):
    return random_run


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_a_bad_input_is_one_line_naming_it(case, small_world, finished_run, tmp_path, monkeypatch):
    if case.name in ("cuda without a GPU", "eval on a missing GPU") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    if case.name == "grid on slurm without a cluster" and shutil.which("srun"):
        pytest.skip("this machine can submit to Slurm")
    monkeypatch.delenv("XMT_DEBUG", raising=False)
    ws = Workspace(small_world, finished_run, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(main, case.setup(ws))
    # Handled: click printed the message and exited (an unhandled exception would be result.exception).
    assert isinstance(result.exception, SystemExit), (case.name, result.exception)
    assert result.exit_code == case.code, (case.name, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    error = [line for line in lines if line.startswith("Error:")]
    assert len(error) == 1 and "Traceback" not in result.output, (case.name, result.output)
    assert re.search(case.message, result.output), (case.name, result.output)
    assert not (tmp_path / "pwned").exists()  # no planted code ran
    # Nothing half-written: no run directory, no evaluation directory left behind.
    for leftover in ("out", "eval", "o"):
        if leftover not in before and case.name != "out not empty":
            assert not (tmp_path / leftover).exists(), (case.name, leftover)


def test_xmt_debug_shows_the_traceback(small_world, finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("XMT_DEBUG", "1")
    ws = Workspace(small_world, finished_run, tmp_path)
    result = CliRunner().invoke(main, ws.eval("--ablations", "bogus"))
    assert result.exit_code == 1 and type(result.exception).__name__ == "ConfigError"
    assert "ablations=bogus" in str(result.exception)


def test_the_table_covers_at_least_48_kinds():
    assert len(CASES) >= 48 and len({c.name for c in CASES}) == len(CASES)


def test_corrupt_images_are_skipped_and_counted_per_stream_in_the_run(small_world, tmp_path):
    """A pairs stream whose shard holds corrupt images trains on; every skip is counted per stream and
    reason in metrics.jsonl, in skipped.json and in the summary `xmt train` prints."""
    from toolkit.data.shards import ShardWriter, iter_tar

    shard = sorted((small_world / "pairs").glob("*.tar"))[0]
    with ShardWriter(tmp_path / "bad", "pairs", max_samples=100_000) as writer:
        for i, (key, sample) in enumerate(iter_tar(shard)):
            if i % 5 == 0:
                sample = {name: (b"not an image" if name.endswith("png") else data) for name, data in sample.items()}
            writer.write(key, sample)
    data = copy.deepcopy(run_dict(small_world, steps=6))
    data["data"]["streams"][1]["paths"] = [str(tmp_path / "bad" / "*.tar")]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "r" / "skipped.json").read_text())
    count = skipped["pairs"]["corrupt image"]["count"]
    # 6 steps of 4 pairs: about one in five read was corrupt (each skipped one replaced by the next).
    assert set(skipped) == {"pairs"} and 4 <= count <= 10 and "pairs" in skipped["pairs"]["corrupt image"]["first"]
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    counts = [r.get("skipped/pairs/corrupt image", 0) for r in rows]
    assert counts == sorted(counts) and counts[-1] == count  # cumulative, ending at the run's total
    assert f"skipped in stream 'pairs': {count} x corrupt image" in result.output
    # Resumed (two more steps asked of a finished run's config), the counts go on from the run's total.
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    cfg["stages"].append({"name": "more", "steps": 2, "lr": 1e-3, "warmup": 0, "schedule": "constant"})
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    again = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "r")])
    assert again.exit_code == 0, again.output
    more = json.loads((tmp_path / "r" / "skipped.json").read_text())["pairs"]["corrupt image"]["count"]
    assert count < more <= count + 4


def test_a_metrics_line_cut_short_is_dropped_on_resume(finished_run, tmp_path):
    """A killed process can leave half a line at the end of metrics.jsonl: the resume drops it."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    rows = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(rows + '{"step": 2, "lo')
    result = CliRunner().invoke(main, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "metrics.jsonl").read_text() == rows


def test_a_run_killed_while_writing_its_config_starts_again(small_world, tmp_path):
    """SIGKILL between a temporary file and its rename leaves `config.yaml.tmp`: the run directory
    holds nothing to resume, so a new run starts there (the grid retries the cell) instead of refusing."""
    from conftest import run_dict

    from toolkit.train.config import run_config_from_dict
    from toolkit.train.loop import run_training

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml.tmp").write_text("")
    summary = run_training(run_config_from_dict(run_dict(small_world, steps=2)), run)
    assert summary["steps"] == 2 and not (run / "config.yaml.tmp").exists()
    (run / "other.txt").write_text("x")
    with pytest.raises(Exception, match="exists and is not empty"):
        run_training(run_config_from_dict(run_dict(small_world, steps=2)), tmp_path / "r")
