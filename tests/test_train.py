import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_MODEL, run_dict
from safetensors.torch import load_file

from toolkit.cli import main
from toolkit.config import ConfigError
from toolkit.train import checkpoint as ckpt
from toolkit.train.config import load_run_config, run_config_from_dict
from toolkit.train.loop import TrainingError, run_training
from toolkit.train.optim import lr_at, param_groups
from toolkit.train.precision import resolve_precision
from toolkit.train.rundir import load_run

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "runs"


def metrics(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_named_run_configs_load_and_the_llm_arm_is_one_switch():
    mllm = load_run_config(RUNS / "tiny-mllm.yaml")
    llm = load_run_config(RUNS / "tiny-llm.yaml")
    assert not mllm.text_only and llm.text_only
    assert llm.model.vision.kind == "none" and llm.model.decoder == mllm.model.decoder
    assert [s.name for s in mllm.stage_streams(0)] == ["text", "pairs", "rendered", "interleaved"]
    assert [s.name for s in llm.stage_streams(0)] == ["text"]
    assert llm.stage_streams(0)[0] == mllm.stage_streams(0)[0]
    paper = load_run_config(RUNS / "kosmos-1.3b.yaml")
    assert (paper.stages[0].steps, paper.stages[0].lr, paper.stages[0].warmup) == (300_000, 2e-4, 375)
    assert [s.batch_size for s in paper.data.streams] == [256, 6144, 128]
    assert (paper.optim.betas, paper.optim.eps, paper.optim.weight_decay) == ((0.9, 0.98), 1e-6, 0.01)
    instruct = load_run_config(RUNS / "tiny-mllm-instruct.yaml", ["stages.1.lr=1e-4"])
    assert [s.name for s in instruct.stages] == ["pretrain", "instruct"] and instruct.stages[1].lr == 1e-4


def test_schedule_and_weight_decay_groups():
    cfg = run_config_from_dict({"stages": [{"steps": 100, "lr": 1.0, "warmup": 10, "schedule": "linear"}]})
    stage = cfg.stages[0]
    assert lr_at(stage, 0) == pytest.approx(0.1) and lr_at(stage, 9) == pytest.approx(1.0)
    assert (
        lr_at(stage, 10) == pytest.approx(1.0) and lr_at(stage, 55) == pytest.approx(0.5) and lr_at(stage, 100) == 0.0
    )
    cosine = run_config_from_dict(
        {"stages": [{"steps": 100, "lr": 1.0, "warmup": 0, "schedule": "cosine", "min_lr_ratio": 0.1}]}
    ).stages[0]
    assert lr_at(cosine, 50) == pytest.approx(0.55) and lr_at(cosine, 100) == pytest.approx(0.1)
    from conftest import tiny_model

    model = tiny_model()
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert any("layer_norm" in names[id(p)] for p in no_decay["params"]) and any(
        "bias" in names[id(p)] for p in no_decay["params"]
    )
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_train_writes_the_run_dir_and_the_loss_falls(small_world, tmp_path):
    data = run_dict(
        small_world, steps=30, logging={"every": 1, "progress": False, "tensorboard": True}, precision="auto"
    )
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["train", str(cfg_path), "checkpoint.keep=2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    run = tmp_path / "r"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["checkpoint"]["keep"] == 2 and resolved["model"]["decoder"]["dim"] == 32
    assert resolved["precision"] == resolve_precision("auto", "cpu")  # written resolved, as it ran
    assert load_run(run).model.tokens.image_pad == 6
    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 31))
    first, last = sum(r["loss"] for r in rows[:5]) / 5, sum(r["loss"] for r in rows[-5:]) / 5
    assert last < 0.8 * first
    assert {"loss/text", "loss/pairs", "loss/interleaved", "lr", "grad_norm", "tokens_per_s"} <= rows[0].keys()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-0000028", "step-0000030"]
    assert json.loads((run / "env.json").read_text())["torch"] == torch.__version__


def _train_subprocess(cfg_path, out=None, resume=None):
    args = [sys.executable, "-m", "toolkit.cli", "train"]
    args += ["--resume", str(resume)] if resume else [str(cfg_path), "--out", str(out)]
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


KILL_SCRIPT = """
import os, signal, sys, yaml
from toolkit.train.config import run_config_from_dict
from toolkit.train.loop import run_training
cfg = run_config_from_dict(yaml.safe_load(open(sys.argv[1])))
kill = lambda step, model: os.kill(os.getpid(), signal.SIGKILL) if step == int(sys.argv[3]) else None
run_training(cfg, sys.argv[2], before_step=kill)
"""


def _nan_at(step_to_break):
    """A fault hook: the embedding weights become NaN just before `step_to_break` runs."""

    def hook(step, model):
        if step == step_to_break:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    return hook


def corrupt(path: Path, how: str) -> None:
    """Truncate a file to half its size, or flip one byte in its middle (same size)."""
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("precision,damage", [("fp32", "truncate"), ("bf16", "flip")])
def test_resume_after_sigkill_is_exactly_the_straight_run(small_world, tmp_path, precision, damage):
    """Killed at step 10 (checkpoints at 4 and 8), the newest checkpoint then damaged: resume skips it
    with a warning naming it, continues from step 4, and ends with the straight run's weights."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run_dict(small_world, steps=14, precision=precision)))
    assert _train_subprocess(tmp_path / "run.yaml", out=tmp_path / "a").returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "run.yaml"), str(tmp_path / "b"), "10"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert first.returncode == -9, first.stderr  # SIGKILL at the start of step 10, after the step-8 checkpoint
    assert [r["step"] for r in metrics(tmp_path / "b")] == list(range(1, 10))
    newest = tmp_path / "b" / "checkpoints" / "step-0000008"
    corrupt(newest / "model.safetensors", damage)
    second = _train_subprocess(None, resume=tmp_path / "b")
    assert second.returncode == 0, second.stderr
    assert f"skipping checkpoint {newest}: model.safetensors" in second.stderr
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 15))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["batch/text"] for r in a] == [r["batch/text"] for r in b]
    wa = load_file(tmp_path / "a" / "checkpoints" / "step-0000014" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "checkpoints" / "step-0000014" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_precision_auto_is_bf16_only_where_the_hardware_multiplies_bf16(monkeypatch):
    from toolkit.train import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert (
        precision.resolve_precision("fp32", "cuda") == "fp32" and precision.resolve_precision("bf16", "cpu") == "bf16"
    )
    with pytest.raises(ConfigError, match="precision: unknown value 'fp16'; valid: auto, fp32, bf16"):
        run_config_from_dict({"precision": "fp16"})


def test_cpu_sdpa_under_bf16_autocast_matches_fp32_attention():
    from toolkit.model.attention import AttentionMask, attend

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, generator=g) for _ in range(3))
    ref, _ = attend(q, k, v, AttentionMask(16, 16), "sdpa")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), AttentionMask(16, 16), "sdpa")
    assert out.dtype == torch.bfloat16  # the caller's dtype; computed in fp32 inside
    assert (out.float() - ref).abs().max() < 3e-2


def test_llm_arm_sees_exactly_the_mllm_text_batches(small_world, tmp_path):
    mllm = run_dict(small_world, steps=8, optim={"grad_accum": 2})
    mllm["data"]["streams"] = mllm["data"]["streams"][1:] + mllm["data"]["streams"][:1]  # text last
    llm = run_dict(small_world, steps=8, optim={"grad_accum": 2}, model={**TINY_MODEL, "vision": {"kind": "none"}})
    run_training(run_config_from_dict(mllm), tmp_path / "mllm")
    run_training(run_config_from_dict(llm), tmp_path / "llm")
    a, b = metrics(tmp_path / "mllm"), metrics(tmp_path / "llm")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))  # every step is compared
    assert [r["batch/text"] for r in a] == [r["batch/text"] for r in b]
    assert len({r["batch/text"] for r in a}) == 8
    assert "loss/pairs" in a[0] and not any(k.startswith("loss/pairs") or k.startswith("batch/pairs") for k in b[0])
    assert load_run(tmp_path / "llm").model.vision.kind == "none"
    # Same seed, same decoder at step 0: the first text losses agree up to the effect of nothing but data.
    assert a[0]["loss/text"] == pytest.approx(b[0]["loss/text"], rel=1e-5)


def test_the_step_hash_covers_every_micro_batch_image_and_mask_but_not_the_split():
    from toolkit.data.format import collate
    from toolkit.model.config import SpecialTokens
    from toolkit.train.loop import batch_digests, step_hash

    special = SpecialTokens()
    rows = [[special.bos, 5, 6, 7], [special.bos, 8, 9], [special.bos, 10], [special.bos, 11, 12, 13, 14]]
    images = [torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]

    def digests(parts, imgs=images, masks=None):
        out, at = [], 0
        for part in parts:
            n = len(part)
            b = collate(
                part, special, images=imgs[at : at + n], loss_masks=None if masks is None else masks[at : at + n]
            )
            out += batch_digests(b)
            at += n
        return out

    whole = step_hash(digests([rows]))
    assert step_hash(digests([rows[:2], rows[2:]])) == whole  # two micro-batches (or two processes)
    assert step_hash(digests([rows[2:], rows[:2]], imgs=images[2:] + images[:2])) == whole
    changed = [rows[0], rows[1], rows[2], rows[3][:-1] + [15]]
    assert step_hash(digests([rows[:2], changed[2:]])) != whole  # the last micro-batch counts
    pixel = [im.clone() for im in images]
    pixel[3][0, 0, 0, 0] += 0.5
    assert step_hash(digests([rows], imgs=pixel)) != whole
    masks = [[True] * len(r) for r in rows]
    masks[1][1] = False
    assert step_hash(digests([rows], masks=masks)) != step_hash(digests([rows], masks=[[True] * len(r) for r in rows]))


def test_a_resumed_run_with_its_streams_listed_in_another_order_continues_exactly(small_world, tmp_path):
    straight = run_dict(small_world, steps=8)
    run_training(run_config_from_dict(straight), tmp_path / "a")
    with pytest.raises(TrainingError, match="non-finite loss at step 6"):
        run_training(run_config_from_dict(straight), tmp_path / "b", before_step=_nan_at(6))
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    saved["data"]["streams"] = saved["data"]["streams"][::-1]
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    run_training(load_run(tmp_path / "b"), tmp_path / "b", resume=True)
    a, b = metrics(tmp_path / "a"), metrics(tmp_path / "b")
    assert [r["step"] for r in b] == list(range(1, 9))
    for key in ("batch/text", "batch/pairs", "batch/interleaved", "loss"):
        assert [r[key] for r in a] == [r[key] for r in b], key


def test_instruction_tuning_arms_see_the_same_stage_two_data_except_the_instructions(small_world, tmp_path):
    """The two arms of experiments/paper/instruction-tuning.yaml: stage 2 lists the shared streams at
    other positions (after `instructions` in one arm); each continues where stage 1 left it."""
    streams = run_dict(small_world)["data"]["streams"]
    instructions = {
        "name": "instructions",
        "kind": "instructions",
        "paths": ["{world}/instructions/*.jsonl"],
        "batch_size": 4,
    }
    runs = {}
    for arm, stage_two in (("instruct", [instructions, streams[0], streams[1]]), ("control", streams[:2])):
        data = run_dict(small_world, steps=4)
        data["stages"].append(
            {"name": "instruct", "steps": 4, "lr": 1e-3, "warmup": 0, "schedule": "constant", "streams": stage_two}
        )
        run_training(run_config_from_dict(data), tmp_path / arm)
        runs[arm] = metrics(tmp_path / arm)
    inst, ctrl = runs["instruct"], runs["control"]
    assert [r["stage"] for r in inst] == ["pretrain"] * 4 + ["instruct"] * 4
    for key in ("batch/text", "batch/pairs"):
        assert [r[key] for r in inst] == [r[key] for r in ctrl], key
    assert "batch/instructions" in inst[-1] and "batch/instructions" not in ctrl[-1]
    assert [r["batch/interleaved"] for r in inst[:4]] == [r["batch/interleaved"] for r in ctrl[:4]]


def test_two_stage_run_continues_from_stage_one_and_masks_prompts(small_world, tmp_path):
    base = run_dict(small_world, steps=6)
    two = run_dict(small_world, steps=6)
    two["stages"] = base["stages"] + [
        {
            "name": "instruct",
            "steps": 4,
            "lr": 1e-3,
            "warmup": 0,
            "schedule": "constant",
            "streams": [
                {
                    "name": "instructions",
                    "kind": "instructions",
                    "paths": ["{world}/instructions/*.jsonl"],
                    "batch_size": 4,
                },
                {"name": "text", "kind": "text", "paths": ["{world}/text/*.jsonl"], "batch_size": 2},
            ],
        }
    ]
    run_training(run_config_from_dict(base), tmp_path / "one")
    run_training(run_config_from_dict(two), tmp_path / "two")
    # The stage boundary checkpoint of the two-stage run is the one-stage run's final state.
    w1 = load_file(tmp_path / "one" / "checkpoints" / "step-0000006" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "checkpoints" / "step-0000006" / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    rows = metrics(tmp_path / "two")
    assert [r["stage"] for r in rows] == ["pretrain"] * 6 + ["instruct"] * 4
    assert "loss/instructions" in rows[-1] and "loss/pairs" not in rows[-1]
    # The text stream continued where stage one left it (no batch repeats its stage-one batches).
    assert not {r["batch/text"] for r in rows[6:]} & {r["batch/text"] for r in rows[:6]}
    state = json.loads((tmp_path / "two" / "checkpoints" / "step-0000010" / "state.json").read_text())
    assert state["stage"] == 1 and set(state["data"]["streams"]) == {"instructions", "text"}
    final = load_file(tmp_path / "two" / "checkpoints" / "step-0000010" / "model.safetensors")
    assert any(not torch.equal(w2[k], final[k]) for k in w2)


def test_instruction_loss_counts_only_answer_tokens(small_world):
    from toolkit.data.mixture import Mixture, StreamConfig
    from toolkit.data.tokenizer import load_tokenizer

    tok = load_tokenizer(small_world)
    mix = Mixture([StreamConfig("i", "instructions", [str(small_world / "instructions" / "*.jsonl")], 3)], tok, 4, 64)
    batch = mix.next_batch()["i"]
    for ids, mask, loss in zip(batch.input_ids, batch.attention_mask, batch.loss_mask):
        text = tok.decode(ids[mask][loss[mask]].tolist())
        prompt = tok.decode(ids[mask][~loss[mask]].tolist())
        assert "Question:" in prompt and prompt.strip().endswith("Answer:") and "Question" not in text


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p.write_text("name: x\nbogus: 1\n"), "unknown config key 'bogus'; valid keys: name, seed"),
        (lambda p: p.write_text("seed: many\n"), "seed: expected an integer, got 'many'"),
        (lambda p: p.write_text("stages: [{name: a\n"), "invalid YAML"),
        (lambda p: None, "config file not found"),
        (
            lambda p: p.write_text(
                "data: {streams: [{name: t, kind: text, paths: [/nope/*.jsonl]}], tokenizer: /nope}\n"
            ),
            "/nope",
        ),
    ],
)
def test_bad_config_input_is_one_clear_line(tmp_path, setup, message):
    cfg = tmp_path / "run.yaml"
    setup(cfg)
    result = CliRunner().invoke(main, ["train", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "r").exists()


def test_nan_stops_with_the_step_and_keeps_a_resumable_checkpoint(small_world, tmp_path):
    cfg = run_config_from_dict(run_dict(small_world, steps=10))
    with pytest.raises(
        TrainingError,
        match="non-finite loss at step 6 in streams? '[a-z, ]+'( \\(one pass\\))?; the last good checkpoint is .*step-0000004",
    ):
        run_training(cfg, tmp_path / "r", before_step=_nan_at(6))
    assert [r["step"] for r in metrics(tmp_path / "r")] == list(range(1, 6))
    summary = run_training(load_run(tmp_path / "r"), tmp_path / "r", resume=True)
    assert summary["steps"] == 10 and [r["step"] for r in metrics(tmp_path / "r")] == list(range(1, 11))


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(small_world, tmp_path):
    data = run_dict(small_world, steps=6)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    one = _train_subprocess(tmp_path / "run.yaml", out=tmp_path / "one")
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "toolkit.cli",
        "train",
        str(tmp_path / "run.yaml"),
        "--out",
        str(tmp_path / "two"),
    ]
    # A process group torn down in the wrong order hangs one process: fail instead of waiting forever.
    launcher = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, start_new_session=True
    )
    try:
        _, err = launcher.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, 9)
        _, err = launcher.communicate()
        pytest.fail(f"torchrun did not finish in 300 s: {err[-3000:]}")
    assert launcher.returncode == 0, err[-3000:]
    a, b = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        for key in ("loss/text", "loss/pairs", "loss/interleaved", "loss", "grad_norm"):
            assert abs(ra[key] - rb[key]) <= 1e-5, (ra["step"], key, ra[key], rb[key])
        for key in ("batch/text", "batch/pairs", "batch/interleaved"):  # both processes' parts, gathered
            assert ra[key] == rb[key], (ra["step"], key)
    wa = load_file(tmp_path / "one" / "checkpoints" / "step-0000006" / "model.safetensors")
    wb = load_file(tmp_path / "two" / "checkpoints" / "step-0000006" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) <= 1e-5


def test_ctrl_c_saves_a_checkpoint_after_the_current_step(small_world, tmp_path):
    import signal
    import time

    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump(run_dict(small_world, steps=5000, checkpoint={"every": 1000, "keep": 2}))
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit.cli", "train", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "r")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    path = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not path.is_file() or len(path.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = metrics(tmp_path / "r")[-1]["step"]
    saved = sorted((tmp_path / "r" / "checkpoints").iterdir())
    assert saved[-1].name == f"step-{last:07d}" and f"interrupted after step {last}" in err


def test_stop_when_ends_the_run_after_that_step_with_a_checkpoint_and_resume_goes_on(small_world, tmp_path):
    """`stop_when` (how a grid being stopped reaches its training cells) is asked once per step: the
    run stops after the step at which it turned true, saving that step; --resume trains the rest."""
    from toolkit.train.loop import TrainingInterrupted

    cfg = run_config_from_dict(run_dict(small_world, steps=6, checkpoint={"every": 1000, "keep": 2}))
    asked = []

    def stop_when():
        asked.append(len(asked) + 1)
        return len(asked) >= 3

    with pytest.raises(TrainingInterrupted, match="interrupted after step 3"):
        run_training(cfg, tmp_path / "r", stop_when=stop_when)
    assert asked == [1, 2, 3]
    assert [p.name for p in sorted((tmp_path / "r" / "checkpoints").glob("step-*"))] == ["step-0000003"]
    run_training(load_run(tmp_path / "r"), tmp_path / "r", resume=True)
    assert [m["step"] for m in metrics(tmp_path / "r") if "loss" in m] == [1, 2, 3, 4, 5, 6]


def test_token_weighted_loss_is_one_mean_over_all_streams(small_world, tmp_path):
    import torch

    from toolkit.data.images import ImageTransform
    from toolkit.data.mixture import Mixture
    from toolkit.data.tokenizer import load_tokenizer
    from toolkit.model import build_model
    from toolkit.train.loop import resolve_model

    cfg = run_config_from_dict(run_dict(small_world, steps=1, optim={"loss_weighting": "tokens", "grad_clip": 0.0}))
    tok = load_tokenizer(small_world)
    cfg = resolve_model(cfg, tok)
    model = build_model(cfg.model, seed=0)
    mix = Mixture(cfg.stage_streams(0), tok, model.num_image_tokens, cfg.data.max_len, ImageTransform(32), seed=0)
    batches = mix.next_batch()
    nll, count = 0.0, 0
    for b in batches.values():
        out = model(b.input_ids, b.images, b.attention_mask, b.loss_mask)
        nll = nll + out.loss * out.num_loss_tokens
        count = count + out.num_loss_tokens
    (nll / count).backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    run_training(cfg, tmp_path / "r")  # one step from the same init on the same batches
    from safetensors.torch import load_file

    after = load_file(tmp_path / "r" / "checkpoints" / "step-0000001" / "model.safetensors")
    fresh = build_model(cfg.model, seed=0)
    # With AdamW's first step, every weight moves by lr * sign-like(grad): compare directions.
    moved = {n: after[n] - p.detach() for n, p in fresh.named_parameters() if n in expected}
    agree = [
        torch.sign(moved[n][expected[n].abs() > 1e-6]) == -torch.sign(expected[n][expected[n].abs() > 1e-6])
        for n in expected
    ]
    assert float(torch.cat([a.flatten() for a in agree]).float().mean()) > 0.99


def test_streams_merged_into_one_pass_train_as_separate_passes(small_world, tmp_path, monkeypatch):
    """optim.merge_streams: the same per-stream losses, batch hashes and weights as one pass per
    stream (fp32; the sums only reassociate), with the image rows and text-only rows in one batch."""
    from toolkit.train import loop
    from toolkit.train.loop import pass_plan

    merged_passes = []
    real_merge = loop.merge_batches
    monkeypatch.setattr(loop, "merge_batches", lambda bs, pad: merged_passes.append(len(bs)) or real_merge(bs, pad))
    runs = {}
    for merge in (True, False):
        data = run_dict(small_world, steps=4)
        data["optim"] = {"merge_streams": merge}
        run_training(run_config_from_dict(data), tmp_path / str(merge))
        rows = [json.loads(line) for line in (tmp_path / str(merge) / "metrics.jsonl").read_text().splitlines()]
        weights = load_file(str(tmp_path / str(merge) / "checkpoints" / "step-0000004" / "model.safetensors"))
        runs[merge] = (rows, weights)
    (merged, w_merged), (separate, w_separate) = runs[True], runs[False]
    assert len(merged) == len(separate) == 4
    assert merged_passes == [3] * 4  # all three streams in one pass at every step of the merged run
    for a, b in zip(merged, separate, strict=True):
        assert {k for k in a if k.startswith("batch/")} == {"batch/text", "batch/pairs", "batch/interleaved"}
        for key in a:
            if key.startswith("batch/"):
                assert a[key] == b[key]
            elif key.startswith("loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-5), key
    for name, tensor in w_separate.items():
        assert torch.allclose(w_merged[name], tensor, atol=1e-5), name
    # The plan: short caption streams together, long text streams together, never one with the other.
    shapes = {"text": (32, 128), "pairs": (64, 22), "rendered": (4, 18), "interleaved": (4, 110)}
    assert pass_plan(shapes) == [["pairs", "rendered"], ["interleaved", "text"]]
    assert pass_plan({"a": (8, 20), "b": (8, 120)}) == [["a"], ["b"]]


def test_resume_records_safe_config_changes_and_evaluation_falls_back_past_a_damaged_checkpoint(small_world, tmp_path):
    """A resumed run whose config.yaml changed only what is safe (logging, checkpoint frequency, a stage
    not yet started) trains on and records the change in metrics.jsonl; the weights are those of the run
    that never changed. Evaluation reads the newest checkpoint that verifies."""
    from toolkit.eval.runner import load_checkpoint

    data = run_dict(small_world, steps=8)
    data["stages"].append({"name": "more", "steps": 2, "lr": 1e-3, "warmup": 0, "schedule": "constant"})
    run_training(run_config_from_dict(data), tmp_path / "a")
    with pytest.raises(TrainingError, match="non-finite loss at step 6"):
        run_training(run_config_from_dict(data), tmp_path / "b", before_step=_nan_at(6))
    saved = yaml.safe_load((tmp_path / "b" / "config.yaml").read_text())
    saved["logging"]["every"], saved["checkpoint"]["every"], saved["stages"][1]["lr"] = 2, 3, 5e-4
    (tmp_path / "b" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    run_training(load_run(tmp_path / "b"), tmp_path / "b", resume=True)
    rows = metrics(tmp_path / "b")
    (event,) = [r for r in rows if "event" in r]
    assert event["step"] == 4 and event["changes"] == {
        "logging.every": [1, 2],
        "checkpoint.every": [4, 3],
        "stages.1.lr": [1e-3, 5e-4],
    }
    weights = {}
    for name in ("a", "b"):
        (final,) = [c for c in ckpt.list_checkpoints(tmp_path / name) if c.name == "step-0000008"]
        weights[name] = load_file(final / "model.safetensors")
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])  # stage one as if unchanged
    # The newest checkpoint damaged: evaluation takes the one before it, naming the one it skipped.
    newest = ckpt.list_checkpoints(tmp_path / "b")[-1]
    corrupt(newest / "trainer.pt", "truncate")  # what only a resume reads: evaluation still takes it
    assert ckpt.verify(newest).startswith("trainer.pt has") and ckpt.verify(newest, weights_only=True) is None
    assert load_checkpoint(tmp_path / "b", "cpu", 4, None).checkpoint == newest
    corrupt(newest / "model.safetensors", "flip")
    assert ckpt.verify(newest) == "model.safetensors does not match its SHA-256 in the manifest"
    assert load_checkpoint(tmp_path / "b", "cpu", 4, None).checkpoint == ckpt.list_checkpoints(tmp_path / "b")[-2]


def test_resume_accepts_the_same_world_or_tower_at_another_path_and_refuses_another_world(small_world, tmp_path):
    import shutil

    from toolkit.config import to_dict
    from toolkit.train.resume import check_resume

    moved = tmp_path / "elsewhere" / "world"
    shutil.copytree(small_world, moved)
    saved = to_dict(run_config_from_dict(run_dict(small_world, steps=4)))
    here = to_dict(run_config_from_dict(run_dict(moved, steps=4)))
    assert set(check_resume(saved, here, 0, 2)) == {"data.world"}  # the same world, moved: a safe change
    other = json.loads((moved / "world.json").read_text())
    other["seed"] += 1  # another world at that path
    (moved / "world.json").write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"data.world"):
        check_resume(saved, here, 0, 2)
    saved["model"]["vision"].update(
        path="towers/conv-0123456789ab", pretrain={**saved["model"]["vision"]["pretrain"], "steps": 10}
    )
    tower = {**saved, "data": here["data"], "model": {**saved["model"], "vision": {**saved["model"]["vision"]}}}
    tower["model"]["vision"]["path"] = str(tmp_path / "towers" / "conv-0123456789ab")  # the same tower's name
    shutil.copyfile(small_world / "world.json", moved / "world.json")
    assert set(check_resume(saved, tower, 0, 2)) == {"data.world", "model.vision.path"}
    tower["model"]["vision"]["path"] = str(tmp_path / "towers" / "conv-ba9876543210")  # another tower
    with pytest.raises(ConfigError, match=r"model.vision.path"):
        check_resume(saved, tower, 0, 2)
