"""Checks that need a CUDA GPU (skipped without one); run them with benchmarks/gpu_check.sh."""

import subprocess
import sys

import pytest
import torch
from conftest import tiny_model

from toolkit.data.format import IMAGE, build_sequence
from toolkit.model.attention import resolve_backend, xformers_available
from toolkit.model.generation import greedy_search, left_pad

needs_xformers = pytest.mark.skipif(
    not xformers_available(), reason="xformers has no working CUDA kernels for this torch build"
)


def test_cpu_use_never_imports_xformers():
    code = (
        "import sys, torch\n"
        "from toolkit.model import build_model, preset_config\n"
        "m = build_model(preset_config('tiny'))\n"
        "m(torch.randint(7, 100, (1, 8)))\n"
        "print('xformers' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"  # the model runs on the CPU even where CUDA exists
    assert "xformers" not in result.stderr.lower()


@pytest.mark.gpu
@needs_xformers
def test_auto_picks_xformers_on_cuda():
    assert resolve_backend("auto", "cuda") == "xformers"
    assert resolve_backend("auto", "cpu") == "sdpa"


@pytest.mark.gpu
@needs_xformers
def test_model_xformers_matches_sdpa_in_bf16_with_padding_and_cache():
    outs = {}
    for backend in ("sdpa", "xformers"):
        model = tiny_model(seed=3, decoder={"attention": backend}).cuda()
        tok, n = model.cfg.tokens, model.num_image_tokens
        prompts = [
            build_sequence([IMAGE, [10, 11, 12]], tok, n, eos=False),
            build_sequence([[13, 14]], tok, n, eos=False),
        ]
        ids, mask = left_pad(prompts, tok.pad)
        images = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(ids.cuda(), images, mask.cuda()).logits.float()
            tokens = greedy_search(model, ids.cuda(), images, mask.cuda(), max_new_tokens=4)
        outs[backend] = (logits[mask.cuda()], tokens)
    assert (outs["sdpa"][0] - outs["xformers"][0]).abs().max() <= 5e-2
    # Greedy tokens may differ only where bf16 rounding flips a near tie; they are usually equal.
    assert len(outs["xformers"][1]) == len(outs["sdpa"][1]) == 2


@pytest.mark.gpu
def test_fsdp2_step_matches_the_unsharded_model(monkeypatch):
    import socket

    import torch.distributed as dist

    from toolkit.train.config import OptimConfig, StageConfig
    from toolkit.train.distributed import shard_fsdp
    from toolkit.train.optim import build_optimizer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        ids = torch.randint(7, 60, (4, 32), generator=torch.Generator().manual_seed(0)).cuda()
        losses, weights = {}, {}
        for name in ("plain", "fsdp"):
            model = tiny_model(seed=5, vision={"kind": "none"}, decoder={"attention": "sdpa"}).cuda().train()
            if name == "fsdp":
                shard_fsdp(model)
            optim = build_optimizer(model, OptimConfig(), StageConfig(lr=1e-3))
            run = []
            for _ in range(3):
                optim.zero_grad(set_to_none=True)
                loss = model(ids, return_logits=False).loss  # as the trainer: the loss fused with the output
                loss.backward()
                optim.step()
                run.append(loss.item())
            losses[name] = run
            weights[name] = {
                k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in model.state_dict().items()
            }
        assert losses["fsdp"] == pytest.approx(losses["plain"], abs=1e-5)
        assert losses["plain"][2] < losses["plain"][0]  # the steps changed the weights
        for key, value in weights["plain"].items():
            assert (weights["fsdp"][key] - value).abs().max() <= 1e-5, key
    finally:
        dist.destroy_process_group()


@pytest.mark.gpu
def test_auto_falls_back_to_sdpa_when_xformers_cannot_run():
    assert resolve_backend("auto", "cuda") == ("xformers" if xformers_available() else "sdpa")


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["eager", "sdpa"])
def test_cuda_padding_and_cache_masks_match_between_backends(backend):
    model = tiny_model(seed=3, decoder={"attention": backend}).cuda()
    tok, n = model.cfg.tokens, model.num_image_tokens
    prompts = [build_sequence([[10, 11, 12]], tok, n, eos=False), build_sequence([[13, 14]], tok, n, eos=False)]
    ids, mask = left_pad(prompts, tok.pad)
    cpu = tiny_model(seed=3, decoder={"attention": "eager"})
    expected = cpu(ids, attention_mask=mask).logits[mask]
    got = model(ids.cuda(), attention_mask=mask.cuda()).logits[mask.cuda()].cpu()
    assert (got - expected).abs().max() <= 1e-4
    assert greedy_search(model, ids.cuda(), None, mask.cuda(), max_new_tokens=3) == greedy_search(
        cpu, ids, None, mask, max_new_tokens=3
    )


@pytest.mark.gpu
def test_cuda_fused_loss_matches_the_loss_from_logits_under_bf16():
    """On CUDA under bf16 autocast, the trainer's fused loss gives the logits path's loss and gradients."""
    ids = torch.randint(7, 60, (4, 32), generator=torch.Generator().manual_seed(1)).cuda()
    grads = []
    for return_logits in (True, False):
        model = tiny_model(seed=6, vision={"kind": "none"}).cuda().train()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(ids, return_logits=return_logits).loss
        loss.backward()
        grads.append((loss.detach(), {k: p.grad.float() for k, p in model.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert abs(loss_a.item() - loss_b.item()) <= 1e-2 * abs(loss_a.item())
    for name, grad in grads_a.items():
        assert (grads_b[name] - grad).abs().max() <= 2e-2 * grad.abs().max() + 1e-6, name
