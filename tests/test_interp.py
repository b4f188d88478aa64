import numpy as np
import pytest
import torch
from conftest import tiny_model

from toolkit.data.format import IMAGE, build_sequence, collate
from toolkit.interp.attention import attention_maps, patch_map, resampler_patch_weights, text_to_image_mass
from toolkit.interp.attribution import attribute
from toolkit.interp.hooks import cache_activations, hook_names, hooks, select
from toolkit.interp.probes import probe, transfer_probe


def _batch(model, seed=0):
    tok, n = model.cfg.tokens, model.num_image_tokens
    seqs = [
        build_sequence([[10, 11], IMAGE, [12, 13, 14]], tok, n),
        build_sequence([IMAGE, [15, 16], IMAGE, [17]], tok, n),
    ]
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(seed))
    return collate(seqs, tok, images=[images[:1], images[1:]])


def test_probe_recovers_a_planted_signal_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 4)  # 60 categories x 4 samples
    category_label = rng.integers(0, 3, 60)
    labels = category_label[groups]
    direction = rng.normal(size=(3, 32))
    x = rng.normal(size=(240, 32)) + 3.0 * direction[labels]
    planted = probe(x, labels, groups)
    assert planted.accuracy > 0.9 and planted.selectivity > 0.4
    assert planted.control_accuracy < 0.6  # random labels per category cannot be learned across categories
    shuffled = probe(x, rng.permutation(labels), groups)
    assert abs(shuffled.accuracy - 1 / 3) < 0.15
    # Cross-set transfer: fit on one half of the categories, test on the other.
    first = groups < 30
    assert transfer_probe(x[first], labels[first], x[~first], labels[~first]) > 0.9


def test_hooks_cache_and_edit_then_leave_no_trace():
    model = tiny_model(seed=1)
    b = _batch(model)
    before = model(b.input_ids, b.images, b.attention_mask).logits
    names = hook_names(model)
    assert "hook_embeds" in names and "decoder.layers.1.hook_resid_post" in names and "hook_image_embeds" in names
    with cache_activations(model) as cache:
        out = model(b.input_ids, b.images, b.attention_mask).logits
    assert torch.equal(out, before)
    assert cache.resid(-1).shape == (2, b.input_ids.shape[1], 32) and cache["hook_image_embeds"].shape == (3, 3, 32)
    # The last block's residual stream, after the final LayerNorm, is what the logits read.
    torch.testing.assert_close(model.decoder.logits(model.decoder.layer_norm(cache.resid(-1))), before)
    text = select(cache.resid(0), b.input_ids, model.cfg.tokens, "text")
    image = select(cache.resid(0), b.input_ids, model.cfg.tokens, "image")
    assert [t.shape[0] for t in text] == [5, 3] and [i.shape[0] for i in image] == [3, 6]
    with hooks(model, {"decoder.layers.0.hook_attn_out": lambda t: torch.zeros_like(t)}):
        ablated = model(b.input_ids, b.images, b.attention_mask).logits
    assert not torch.equal(ablated, before)
    after = model(b.input_ids, b.images, b.attention_mask).logits
    assert torch.equal(after, before)
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(KeyError, match="unknown hook point"):
        with hooks(model, {"decoder.layers.9.hook_nothing": lambda t: t}):
            pass


def test_eager_recompute_matches_the_sdpa_forward_and_traces_to_patches():
    model = tiny_model(seed=2, decoder={"attention": "sdpa"})
    b = _batch(model)
    with torch.no_grad():
        sdpa = model(b.input_ids, b.images, b.attention_mask).hidden
    maps = attention_maps(model, b.input_ids, b.images, b.attention_mask)
    assert (maps.hidden - sdpa).abs().max() <= 1e-5
    for w in maps.weights:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-5, rtol=0)
    mass = text_to_image_mass(maps)
    assert mass.shape == (2, 4) and bool(((mass >= 0) & (mass <= 1)).all())
    r = resampler_patch_weights(model, b.images)
    assert r.shape == (3, 3, 4)
    torch.testing.assert_close(r.sum(-1), torch.ones(3, 3))
    # Token "17" (last text token of row 1) looking at that row's second image (the third image overall).
    query = int((b.input_ids[1] == 17).nonzero()[0])
    grid = patch_map(model, maps, b.images, row=1, query=query, layer=1, image_index=1)
    assert grid.shape == (2, 2)
    span = maps.image_positions[1].nonzero().squeeze(-1)[3:6]
    expected = maps.weights[1][1].mean(0)[query, span].sum()
    torch.testing.assert_close(grid.sum(), expected, atol=1e-5, rtol=0)


def test_attribution_is_complete_and_shares_sum_to_one():
    model = tiny_model(seed=3)
    tok, n = model.cfg.tokens, model.num_image_tokens
    context = torch.tensor(build_sequence([IMAGE, [20, 21, 22]], tok, n, eos=False))
    images = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = attribute(model, context, [30, 31], images, n_steps=128)
    diff = result.output - result.baseline_output
    assert abs(diff) > 1e-3
    assert abs(float(result.text.sum() + result.patches.sum()) - diff) <= 0.02 * abs(diff) + 1e-4
    assert abs(result.delta) <= 0.02 * abs(diff) + 1e-4
    shares = result.shares
    assert shares["text"] + shares["image"] == pytest.approx(1.0) and 0 < shares["image"] < 1
    assert result.patches.shape == (1, 4)
    assert bool((result.text[context == tok.image_pad] == 0).all())
