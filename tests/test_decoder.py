import math
import sys
import types

import pytest
import torch
from conftest import tiny_config, tiny_model
from torch import nn

from toolkit.model import build_model
from toolkit.model.decoder import MAGNETO_SCALED


def test_magneto_scales_exactly_the_named_parameters():
    magneto = tiny_model(seed=3, decoder={"init": "magneto"})
    standard = tiny_model(seed=3, decoder={"init": "standard"})
    gamma = math.sqrt(math.log(2 * magneto.cfg.decoder.layers))
    scaled = 0
    for (name, a), (_, b) in zip(magneto.decoder.named_parameters(), standard.decoder.named_parameters(), strict=False):
        if any(key in name for key in MAGNETO_SCALED):
            torch.testing.assert_close(a, b * gamma, rtol=0, atol=1e-7)
            scaled += 1
        else:
            assert torch.equal(a, b), name
    # fc1, fc2, out_proj, v_proj weights and biases in every layer.
    assert scaled == 8 * magneto.cfg.decoder.layers
    # Modules outside the decoder (vision, resampler: they too have fc1/out_proj/v_proj names) are untouched.
    for (name, a), (_, b) in zip(magneto.named_parameters(), standard.named_parameters(), strict=False):
        if not name.startswith("decoder."):
            assert torch.equal(a, b), name


def test_preln_switch_removes_the_inner_layernorms():
    subln = tiny_model(decoder={"norm": "subln"})
    preln = tiny_model(decoder={"norm": "preln"})
    names = {n for n, _ in subln.decoder.named_parameters()}
    assert "layers.0.self_attn.inner_attn_ln.weight" in names
    assert "layers.0.ffn.ffn_layernorm.weight" in names
    pre_names = {n for n, _ in preln.decoder.named_parameters()}
    assert not any("inner_attn_ln" in n or "ffn_layernorm" in n for n in pre_names)
    assert names - pre_names == {
        f"layers.{i}.{m}.{p}"
        for i in range(2)
        for m in ("self_attn.inner_attn_ln", "ffn.ffn_layernorm")
        for p in ("weight", "bias")
    }
    for layer in preln.decoder.layers:
        assert isinstance(layer.self_attn.inner_attn_ln, nn.Identity)
        assert isinstance(layer.ffn.ffn_layernorm, nn.Identity)


@pytest.mark.parametrize(
    "overrides", [{}, {"decoder": {"positions": "learned", "tie_embeddings": False}}, {"vision": {"kind": "clip"}}]
)
def test_init_weights_covers_every_parameter(overrides):
    model = build_model(tiny_config(**overrides), init=False)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.init_weights()
    assert [n for n, p in model.named_parameters() if torch.isnan(p).any()] == []


def test_tied_and_untied_output_projection():
    tied = tiny_model()
    assert tied.decoder.output_projection is None
    h = torch.randn(1, 2, 32)
    torch.testing.assert_close(tied.decoder.logits(h), h @ tied.decoder.embed_tokens.weight.T)
    untied = tiny_model(decoder={"tie_embeddings": False})
    std = untied.decoder.output_projection.weight.std().item()
    assert abs(std - 32**-0.5) < 0.03


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        model = tiny_model(seed=1, decoder={"gradient_checkpointing": ckpt}).train()
        ids = torch.randint(7, 64, (2, 12))
        torch.manual_seed(5)
        model(ids).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=0, atol=1e-6)


def test_dropout_is_active_only_in_training():
    model = tiny_model(decoder={"dropout": 0.5, "attention_dropout": 0.5})
    ids = torch.randint(7, 64, (2, 10))
    assert torch.equal(model(ids).logits, model(ids).logits)
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)


def _import_torchscale():
    """torchscale 0.3.0 (the library Kosmos-1 was built on) as the reference implementation.

    Its imports of fairscale and timm serve activation checkpointing, FSDP and drop-path, none of which
    the parity check uses; stand-ins are registered only when those packages are absent.
    """
    pytest.importorskip("torchscale", reason="torchscale 0.3.0 (reference) is not installed")
    try:
        import fairscale.nn  # noqa: F401
    except ImportError:
        fs, fsn = types.ModuleType("fairscale"), types.ModuleType("fairscale.nn")
        fsn.checkpoint_wrapper = fsn.wrap = lambda module, **_: module
        fs.nn = fsn
        sys.modules.update({"fairscale": fs, "fairscale.nn": fsn})
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        layers = types.ModuleType("timm.models.layers")
        layers.drop_path = None
        sys.modules.update(
            {
                "timm": types.ModuleType("timm"),
                "timm.models": types.ModuleType("timm.models"),
                "timm.models.layers": layers,
            }
        )
    from torchscale.architecture.config import DecoderConfig
    from torchscale.architecture.decoder import Decoder

    return DecoderConfig, Decoder


@pytest.mark.parametrize("subln", [True, False])
def test_logits_match_torchscale_with_mapped_weights(subln):
    TSConfig, TSDecoder = _import_torchscale()
    torch.manual_seed(0)
    ts_cfg = TSConfig(
        vocab_size=64,
        decoder_embed_dim=32,
        decoder_layers=3,
        decoder_attention_heads=4,
        decoder_ffn_embed_dim=64,
        subln=subln,
        xpos_rel_pos=True,
        dropout=0.0,
        attention_dropout=0.0,
    )
    reference = TSDecoder(ts_cfg, embed_tokens=nn.Embedding(64, 32)).eval()
    ours = tiny_model(
        decoder={"layers": 3, "norm": "subln" if subln else "preln", "tie_embeddings": False, "positions": "xpos"},
        vision={"kind": "none"},
    )
    # Same parameter names; torchscale also stores xPos's zeta as a buffer, which we compute.
    weights = {k: v for k, v in reference.state_dict().items() if not k.endswith("xpos.scale")}
    ours.decoder.load_state_dict(weights, strict=True)
    ids = torch.randint(7, 64, (2, 21))
    with torch.no_grad():
        want, _ = reference(ids)
        got = ours(ids).logits
    assert (got - want).abs().max() <= 1e-5


@pytest.mark.slow
def test_compiled_blocks_match_eager():
    eager = tiny_model(seed=8)
    compiled = tiny_model(seed=8, decoder={"compile": True})
    ids = torch.randint(7, 64, (2, 16))
    out_a, out_b = eager(ids), compiled(ids)
    assert (out_a.logits - out_b.logits).abs().max() <= 1e-5
    out_a.loss.backward()
    out_b.loss.backward()
    for (n, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters(), strict=False):
        if a.grad is not None:
            assert (a.grad - b.grad).abs().max() <= 1e-5, n
    assert [n for n, _ in eager.named_parameters()] == [n for n, _ in compiled.named_parameters()]
