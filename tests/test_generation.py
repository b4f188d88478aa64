import itertools

import pytest
import torch
from conftest import tiny_model

from toolkit.data.format import IMAGE, build_sequence
from toolkit.model.generation import beam_search, greedy_search, left_pad, score_continuations

POSITIONS = ["xpos", "rope", "learned"]


def _prompts(model):
    tok, n = model.cfg.tokens, model.num_image_tokens
    prompts = [
        build_sequence([IMAGE, [10, 11, 12]], tok, n, eos=False),
        build_sequence([[13, 14]], tok, n, eos=False),
        build_sequence([[20, 21], IMAGE, [22]], tok, n, eos=False),
    ]
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return prompts, images


@pytest.mark.parametrize("positions", POSITIONS)
def test_kv_cache_logits_equal_full_forward(positions):
    model = tiny_model(decoder={"positions": positions})
    prompts, images = _prompts(model)
    ids, mask = left_pad(prompts, model.cfg.tokens.pad)
    cont = torch.randint(7, 64, (3, 6), generator=torch.Generator().manual_seed(1))
    full_ids = torch.cat([ids, cont], 1)
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    with torch.no_grad():
        full = model(full_ids, images, full_mask, compute_loss=False).logits
        out = model(ids, images, mask, use_cache=True, compute_loss=False)
        stepped = [out.logits]
        cache = out.cache
        # Feed the continuation in chunks of 1, 2 and 3 tokens.
        for a, b in [(0, 1), (1, 3), (3, 6)]:
            out = model(cont[:, a:b], cache=cache, use_cache=True, compute_loss=False)
            stepped.append(out.logits)
            cache = out.cache
    stepped = torch.cat(stepped, 1)
    valid = full_mask
    assert (stepped[valid] - full[valid]).abs().max() <= 1e-5


def _naive_greedy(model, prompt, images, steps, eos):
    ids = list(prompt)
    out = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ids]), images, compute_loss=False).logits[0, -1]
        tok = int(logits.argmax())
        if tok == eos:
            break
        out.append(tok)
        ids.append(tok)
    return out


@pytest.mark.parametrize("positions", POSITIONS)
def test_greedy_with_cache_equals_greedy_by_full_forward(positions):
    model = tiny_model(seed=4, decoder={"positions": positions})
    prompts, images = _prompts(model)
    ids, mask = left_pad(prompts, model.cfg.tokens.pad)
    got = greedy_search(model, ids, images, mask, max_new_tokens=8)
    per_prompt_images = [images[:1], None, images[1:]]
    want = [
        _naive_greedy(model, p, im, 8, model.cfg.tokens.eos) for p, im in zip(prompts, per_prompt_images, strict=False)
    ]
    assert got == want
    assert any(len(g) == 8 for g in got)


def test_greedy_stops_at_stop_tokens_and_respects_allowed_tokens():
    model = tiny_model(seed=4)
    prompts, images = _prompts(model)
    ids, mask = left_pad(prompts, model.cfg.tokens.pad)
    free = greedy_search(model, ids, images, mask, max_new_tokens=8)
    # Make the first free token of row 0 a stop token: row 0 then yields nothing.
    stopped = greedy_search(model, ids, images, mask, max_new_tokens=8, stop_ids=[free[0][0]])
    assert stopped[0] == []
    allowed = greedy_search(
        model, ids, images, mask, max_new_tokens=5, stop_ids=[], allowed_tokens=lambda row, h: [30, 31]
    )
    assert all(len(g) == 5 and set(g) <= {30, 31} for g in allowed)


def _seq_logprob(model, prompt, tokens):
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt) + list(tokens)]), compute_loss=False).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(tokens))


def test_beam_search_finds_the_best_sequence_exhaustively():
    model = tiny_model(seed=2, decoder={"vocab_size": 12})
    prompt = [1, 8, 9, 10]
    words = list(range(7, 12))  # ordinary tokens; special ids (e.g. <image>) are not generated here
    hyps = beam_search(
        model,
        torch.tensor([prompt]),
        max_new_tokens=2,
        num_beams=len(words),
        stop_ids=[],
        length_penalty=0.0,
        allowed_tokens=lambda row, history: words,
    )[0]
    best = max(itertools.product(words, repeat=2), key=lambda s: _seq_logprob(model, prompt, s))
    assert hyps[0].tokens == list(best)
    assert hyps[0].logprob == pytest.approx(_seq_logprob(model, prompt, best), abs=1e-4)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_beam_of_one_is_greedy_and_wider_beams_score_at_least_as_well():
    model = tiny_model(seed=4)
    prompts, images = _prompts(model)
    ids, mask = left_pad(prompts, model.cfg.tokens.pad)
    greedy = greedy_search(model, ids, images, mask, max_new_tokens=6, stop_ids=[])
    one = beam_search(model, ids, images, mask, max_new_tokens=6, num_beams=1, stop_ids=[], length_penalty=0.0)
    assert [h[0].tokens for h in one] == greedy
    five = beam_search(model, ids, images, mask, max_new_tokens=6, num_beams=5, stop_ids=[], length_penalty=0.0)
    for a, b in zip(one, five, strict=False):
        assert b[0].logprob >= a[0].logprob - 1e-5


def test_beam_search_ends_hypotheses_at_stop_tokens():
    model = tiny_model(seed=4)
    prompt = torch.tensor([[1, 10, 11]])
    hyps = beam_search(model, prompt, max_new_tokens=6, num_beams=3, stop_ids=list(range(7, 40)))
    # With most of the vocabulary stopping, hypotheses end early; a finished one excludes its stop token.
    assert len(hyps[0]) >= 3
    assert all(all(t not in range(7, 40) for t in h.tokens) for h in hyps[0])
    assert any(len(h.tokens) < 6 for h in hyps[0])


def test_score_continuations_matches_unbatched_forward():
    model = tiny_model(seed=6)
    tok, n = model.cfg.tokens, model.num_image_tokens
    image = torch.randn(1, 3, 16, 16)
    contexts = [build_sequence([IMAGE, [10, 11]], tok, n, eos=False), [1, 12, 13, 14, 15], [1, 9]]
    continuations = [[20, 21], [22], [23, 24, 25]]
    images = [image, None, None]
    scores = score_continuations(model, contexts, continuations, images, batch_size=2)
    for ctx, cont, im, s in zip(contexts, continuations, images, scores, strict=False):
        with torch.no_grad():
            logits = model(torch.tensor([ctx + cont]), im, compute_loss=False).logits[0]
        logp = torch.log_softmax(logits.float(), -1)
        want = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
        assert s.logprob == pytest.approx(want, abs=1e-5)
        assert s.num_tokens == len(cont)
        greedy = all(int(logp[len(ctx) - 1 + i].argmax()) == t for i, t in enumerate(cont))
        assert s.is_greedy == greedy


def test_generation_never_emits_image_or_padding_tokens():
    model = tiny_model(seed=4)
    tok = model.cfg.tokens
    # Make the image tokens the most likely next tokens everywhere.
    with torch.no_grad():
        model.decoder.embed_tokens.weight[[tok.image, tok.image_pad, tok.image_end]] *= 50
    prompts, images = _prompts(model)
    ids, mask = left_pad(prompts, tok.pad)
    banned = {tok.pad, tok.bos, tok.image, tok.image_end, tok.image_pad}
    for out in greedy_search(model, ids, images, mask, max_new_tokens=6):
        assert not banned & set(out)
    for hyps in beam_search(model, ids, images, mask, max_new_tokens=4, num_beams=3):
        assert all(not banned & set(h.tokens) for h in hyps)


def test_kv_cache_grows_past_its_room_and_can_be_reused():
    """Decoding one token at a time well past the cache's first room gives the full forward's logits;
    a second continuation from an older cache is not disturbed by the first (nor the first by it)."""
    model = tiny_model(decoder={"max_len": 128})
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(7, 64, (2, 90), generator=g)
    with torch.no_grad():
        full = model(ids, compute_loss=False).logits
        out = model(ids[:, :4], use_cache=True, compute_loss=False)
        prompt_cache, steps = out.cache, [out.logits]
        cache = prompt_cache
        for t in range(4, 90):  # the first room holds 4 + 64 tokens: it grows on the way
            out = model(ids[:, t : t + 1], cache=cache, use_cache=True, compute_loss=False)
            steps.append(out.logits)
            cache = out.cache
        assert (torch.cat(steps, 1) - full).abs().max() <= 1e-5
        # Another continuation from the prompt's cache, after the first one wrote past it.
        other = torch.randint(7, 64, (2, 3), generator=g)
        branch = model(other, cache=prompt_cache, use_cache=True, compute_loss=False).logits
        want = model(torch.cat([ids[:, :4], other], 1), compute_loss=False).logits[:, 4:]
        assert (branch - want).abs().max() <= 1e-5
        # ... and the first continuation's cache still reads its own tokens.
        last = model(ids[:, :1], cache=cache, use_cache=True, compute_loss=False).logits
        want = model(torch.cat([ids, ids[:, :1]], 1), compute_loss=False).logits[:, -1:]
        assert (last - want).abs().max() <= 1e-5


def test_kv_cache_with_given_position_ids_equals_full_forward():
    model = tiny_model()
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(7, 64, (2, 10), generator=g)
    positions = torch.arange(3, 13).expand(2, 10)  # e.g. a prompt that starts at an offset
    with torch.no_grad():
        full = model.decoder(model.embed(ids), position_ids=positions).hidden
        out = model.decoder(model.embed(ids[:, :6]), position_ids=positions[:, :6], use_cache=True)
        # The continuation takes default positions: they go on after the largest given one.
        rest = model.decoder(model.embed(ids[:, 6:]), cache=out.cache, use_cache=True).hidden
    assert (torch.cat([out.hidden, rest], 1) - full).abs().max() <= 1e-5
