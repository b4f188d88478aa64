"""The fused output-layer + loss equals logits -> cross-entropy, in value and in every gradient."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from toolkit.data.format import IMAGE, build_sequence, collate
from toolkit.model import build_model
from toolkit.model.loss import fused_output_nll


def _reference(hidden, weight, targets, row_weight):
    nll = F.cross_entropy((hidden @ weight.T).float(), targets, reduction="none")
    return (nll * row_weight).sum()


def _value_and_grads(fn, hidden, weight, targets, row_weight, bf16=False):
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        total = fn(h, w, targets, row_weight)
    (total * 0.37).backward()  # a non-unit incoming gradient
    return total.detach(), h.grad, w.grad


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_fused_nll_equals_cross_entropy_in_fp32(chunk):
    g = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(50, 16, generator=g), torch.randn(97, 16, generator=g)
    targets = torch.randint(0, 97, (50,), generator=g)
    row_weight = (torch.rand(50, generator=g) > 0.3).float()
    ref = _value_and_grads(_reference, hidden, weight, targets, row_weight)
    fused = _value_and_grads(
        lambda h, w, t, r: fused_output_nll(h, w, t, r, chunk=chunk), hidden, weight, targets, row_weight
    )
    assert fused[0].dtype == torch.float32
    for a, b in zip(ref, fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_fused_nll_under_bf16_autocast_matches_the_unfused_autocast_path():
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(64, 32, generator=g), torch.randn(200, 32, generator=g) * 0.2
    targets = torch.randint(0, 200, (64,), generator=g)
    row_weight = torch.ones(64)
    ref = _value_and_grads(_reference, hidden, weight, targets, row_weight, bf16=True)
    fused = _value_and_grads(
        lambda h, w, t, r: fused_output_nll(h, w, t, r, chunk=16), hidden, weight, targets, row_weight, bf16=True
    )
    exact = _value_and_grads(_reference, hidden.double(), weight.double(), targets, row_weight.double())
    # Gradients keep the inputs' dtypes (fp32 parameters, fp32 activations).
    assert fused[1].dtype == torch.float32 and fused[2].dtype == torch.float32
    for a, b, x in zip(ref, fused, exact, strict=True):
        # bf16 matmuls: both paths are within bf16 rounding of the float64 value, and of each other.
        scale = x.abs().max().item()
        assert (b.double() - x).abs().max().item() <= 2e-2 * scale
        assert (b - a).abs().max().item() <= 2e-2 * scale


def test_rows_with_weight_zero_neither_count_nor_get_gradient():
    g = torch.Generator().manual_seed(2)
    hidden, weight = torch.randn(10, 8, generator=g), torch.randn(30, 8, generator=g)
    targets = torch.randint(0, 30, (10,), generator=g)
    row_weight = torch.zeros(10)
    row_weight[:4] = 1.0
    total, h_grad, _ = _value_and_grads(fused_output_nll, hidden, weight, targets, row_weight)
    only = _value_and_grads(fused_output_nll, hidden[:4], weight, targets[:4], torch.ones(4))
    torch.testing.assert_close(total, only[0])
    assert torch.equal(h_grad[4:], torch.zeros_like(h_grad[4:]))


def test_fused_nll_without_grad_gives_the_value():
    g = torch.Generator().manual_seed(3)
    hidden, weight = torch.randn(12, 8, generator=g), torch.randn(20, 8, generator=g)
    targets, row_weight = torch.randint(0, 20, (12,), generator=g), torch.ones(12)
    with torch.no_grad():
        total = fused_output_nll(hidden, weight, targets, row_weight, chunk=5)
    torch.testing.assert_close(total, _reference(hidden, weight, targets, row_weight))


@pytest.mark.parametrize("tie", [True, False])
def test_model_loss_without_logits_equals_the_loss_from_logits(tie):
    """The training path (return_logits=False) gives the same loss and the same gradient for every
    parameter as the logits path, on a caption batch with padding, an image span and a loss mask."""
    cfg = tiny_config(decoder={"tie_embeddings": tie})
    g = torch.Generator().manual_seed(4)
    n = build_model(cfg, seed=0).num_image_tokens
    text = torch.randint(7, cfg.decoder.vocab_size, (3, 12), generator=g).tolist()
    seqs = [
        build_sequence([IMAGE, text[0]], cfg.tokens, n),
        build_sequence([text[1][:5]], cfg.tokens, n),
        build_sequence([text[2]], cfg.tokens, n),
    ]
    batch = collate(seqs, cfg.tokens, images=[torch.randn(1, 3, 16, 16, generator=g), None, None])
    loss_mask = torch.ones_like(batch.input_ids, dtype=torch.bool)
    loss_mask[2, :6] = False
    results = []
    for return_logits in (True, False):
        model = build_model(cfg, seed=0)
        out = model(batch.input_ids, batch.images, batch.attention_mask, loss_mask, return_logits=return_logits)
        out.loss.backward()
        assert (out.logits is None) == (not return_logits)
        results.append((out.loss.detach(), out.num_loss_tokens, {k: p.grad for k, p in model.named_parameters()}))
    (loss_a, count_a, grads_a), (loss_b, count_b, grads_b) = results
    assert count_a == count_b
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-6, msg=name)
