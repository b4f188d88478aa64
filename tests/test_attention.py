import pytest
import torch

from toolkit.model.attention import BACKENDS, AttentionMask, attend, resolve_backend, xformers_available
from toolkit.registry import UnknownNameError


def _qkv(B=2, H=3, Tq=7, Tk=7, D=8, dtype=torch.float32, device="cpu", grad=True):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for T in (Tq, Tk, Tk))
    return [t.to(device=device, dtype=dtype).requires_grad_(grad) for t in (q * D**-0.5, k, v)]


def _padding(B=2, T=7):
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[0, :2] = False  # left padding in row 0
    valid[1, -3:] = False  # right padding in row 1
    return valid


@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("q_len", [7, 3, 1])
def test_sdpa_matches_eager_outputs_and_gradients(pad, q_len):
    key_valid = _padding() if pad else None
    mask = AttentionMask(q_len, 7, causal=True, key_valid=key_valid)
    results = []
    for backend in ("eager", "sdpa"):
        q, k, v = _qkv(Tq=q_len)
        out, _ = attend(q, k, v, mask, backend)
        weight = torch.linspace(-1, 1, out.numel()).view_as(out)
        (out * weight).sum().backward()
        results.append((out.detach(), q.grad, k.grad, v.grad))
    for a, b in zip(*results, strict=False):
        assert torch.isfinite(a).all()
        assert (a - b).abs().max() <= 1e-5


def test_eager_weights_are_causal_distributions_over_valid_keys():
    valid = _padding()
    q, k, v = _qkv(grad=False)
    _, weights = attend(q, k, v, AttentionMask(7, 7, causal=True, key_valid=valid), "eager")
    assert weights.shape == (2, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7), atol=1e-6, rtol=0)
    assert (weights.triu(diagonal=1) == 0).all()
    # Real queries never look at padded keys.
    assert (weights[1, :, :4, 4:] == 0).all()
    assert (weights[0, :, 2:, :2] == 0).all()


def test_non_causal_mask_is_trivial_and_backends_agree():
    q, k, v = _qkv(Tq=4, Tk=9, grad=False)
    mask = AttentionMask(4, 9, causal=False)
    assert mask.dense is None
    a, w = attend(q, k, v, mask, "eager")
    b, _ = attend(q, k, v, mask, "sdpa")
    assert (a - b).abs().max() <= 1e-5
    assert w.shape == (2, 3, 4, 9)


def test_backend_errors_name_the_valid_choices():
    with pytest.raises(UnknownNameError, match="available: eager, sdpa, xformers"):
        resolve_backend("flash")
    assert resolve_backend("auto", "cpu") == "sdpa"
    assert sorted(BACKENDS) == ["eager", "sdpa", "xformers"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_xformers_without_cuda_fails_clearly():
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        resolve_backend("xformers")
    q, k, v = _qkv(grad=False)
    with pytest.raises(RuntimeError, match="xformers has no CPU kernels"):
        attend(q, k, v, AttentionMask(7, 7), "xformers")


@pytest.mark.gpu
@pytest.mark.skipif(not xformers_available(), reason="xformers has no working CUDA kernels for this torch build")
@pytest.mark.parametrize("pad", [False, True])
@pytest.mark.parametrize("q_len", [64, 1])
def test_xformers_matches_sdpa_bf16(pad, q_len):
    key_valid = _padding(B=2, T=64).cuda() if pad else None
    mask = AttentionMask(q_len, 64, causal=True, key_valid=key_valid)
    results = []
    for backend in ("sdpa", "xformers"):
        q, k, v = _qkv(H=4, Tq=q_len, Tk=64, D=64, dtype=torch.bfloat16, device="cuda")
        out, _ = attend(q, k, v, mask, backend)
        out.float().sum().backward()
        results.append((out.detach().float(), q.grad.float(), k.grad.float(), v.grad.float()))
    for a, b in zip(*results, strict=False):
        assert (a - b).abs().max() <= 2e-2
