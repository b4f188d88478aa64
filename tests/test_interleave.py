import pytest
import torch
from conftest import tiny_model

from toolkit.data.format import IMAGE, build_sequence, collate
from toolkit.model import ImageSpanError

TEXT = [[10, 11, 12], [13, 14], [15, 16, 17, 18]]


def _images(m, size=16, seed=0):
    return torch.randn(m, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "layouts",
    [
        [[TEXT[0]], [TEXT[1]]],  # no images
        [[IMAGE, TEXT[0]], [TEXT[1], IMAGE, TEXT[2]]],  # one image per sequence
        [[IMAGE, TEXT[0], IMAGE, TEXT[1], IMAGE], [TEXT[2]], [IMAGE, IMAGE, TEXT[0]]],  # several, and none
    ],
)
def test_images_land_exactly_at_their_spans(layouts):
    model = tiny_model()
    tok, n = model.cfg.tokens, model.num_image_tokens
    seqs = [build_sequence(parts, tok, n) for parts in layouts]
    counts = [sum(p == IMAGE for p in parts) for parts in layouts]
    pixels = _images(sum(counts))
    per_seq = list(torch.split(pixels, counts))
    batch = collate(seqs, tok, images=per_seq)
    with torch.no_grad():
        embeds = model.embed(batch.input_ids, batch.images)
        image_embeds = model.embed_images(pixels) if sum(counts) else None
        token_embeds = model.decoder.embed_tokens(batch.input_ids)
    m = 0
    for row, seq in enumerate(seqs):
        for col, t in enumerate(seq):
            if t == tok.image:
                # The N positions after <image> hold image m's embeddings, in order; </image> follows.
                torch.testing.assert_close(embeds[row, col + 1 : col + 1 + n], image_embeds[m], rtol=0, atol=0)
                assert seq[col + 1 + n] == tok.image_end
                m += 1
        text_positions = batch.input_ids[row] != tok.image_pad
        torch.testing.assert_close(embeds[row][text_positions], token_embeds[row][text_positions], rtol=0, atol=0)
    assert m == sum(counts)


def test_each_image_only_changes_its_own_span():
    model = tiny_model()
    tok, n = model.cfg.tokens, model.num_image_tokens
    seq = build_sequence([IMAGE, TEXT[0], IMAGE, TEXT[1]], tok, n)
    batch = collate([seq], tok)
    pixels = _images(2)
    changed = pixels.clone()
    changed[1] = _images(1, seed=9)[0]
    with torch.no_grad():
        a = model.embed(batch.input_ids, pixels)
        b = model.embed(batch.input_ids, changed)
    differs = (a - b).abs().amax(-1)[0] > 0
    second_span = torch.zeros(len(seq), dtype=torch.bool)
    start = seq.index(tok.image, seq.index(tok.image) + 1)
    second_span[start + 1 : start + 1 + n] = True
    assert torch.equal(differs, second_span)


def test_loss_ignores_image_positions_padding_and_masked_tokens():
    model = tiny_model()
    tok, n = model.cfg.tokens, model.num_image_tokens
    seqs = [build_sequence([IMAGE, TEXT[0]], tok, n), build_sequence([TEXT[1], TEXT[2]], tok, n)]
    # Mask the prompt of row 1 (its first 3 tokens) from the loss.
    loss_masks = [[True] * len(seqs[0]), [False] * 3 + [True] * (len(seqs[1]) - 3)]
    batch = collate(seqs, tok, images=[_images(1), None], loss_masks=loss_masks)
    with torch.no_grad():
        out = model(batch.input_ids, batch.images, batch.attention_mask, batch.loss_mask)
    logp = torch.log_softmax(out.logits.float(), -1)
    total, count = 0.0, 0
    for row, seq in enumerate(seqs):
        for t in range(1, len(seq)):
            if seq[t] == tok.image_pad or not loss_masks[row][t]:
                continue
            total -= logp[row, t - 1, seq[t]].item()
            count += 1
    # Row 0: <image> and </image> + text + </s> are targets, the N placeholders are not.
    assert count == (len(seqs[0]) - 1 - n) + (len(seqs[1]) - 3)
    assert out.num_loss_tokens.item() == count
    assert out.loss.item() == pytest.approx(total / count, rel=1e-5)


def test_loss_does_not_depend_on_what_stands_at_masked_targets():
    model = tiny_model()
    ids = torch.randint(7, 64, (1, 12))
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, -1] = False  # the last token is not a target
    other = ids.clone()
    other[0, -1] = (ids[0, -1] + 1 - 7) % 57 + 7
    with torch.no_grad():
        assert model(ids, loss_mask=mask).loss.item() == model(other, loss_mask=mask).loss.item()
        assert model(ids).loss.item() != model(other).loss.item()


def test_span_and_image_mismatches_are_clear_errors():
    model = tiny_model()
    tok, n = model.cfg.tokens, model.num_image_tokens
    seq = build_sequence([IMAGE, TEXT[0], IMAGE], tok, n)
    ids = collate([seq], tok).input_ids
    with pytest.raises(ImageSpanError, match="2 <image> spans but 1 images"):
        model.embed(ids, _images(1))
    with pytest.raises(ImageSpanError, match="2 <image> spans but 0 images"):
        model.embed(ids, None)
    short = build_sequence([IMAGE, TEXT[0]], tok, n - 1)
    with pytest.raises(ImageSpanError, match=f"<image> \\+ {n} placeholders \\+ </image>.*found {n - 1}"):
        model.embed(collate([short], tok).input_ids, _images(1))
    stray = torch.tensor([[tok.bos, 10, tok.image_pad, 11]])
    with pytest.raises(ImageSpanError, match="outside any <image>"):
        model.embed(stray, None)
    text_only = tiny_model(vision={"kind": "none"})
    assert text_only.num_image_tokens == 0 and text_only.vision is None
    with pytest.raises(ImageSpanError, match="no vision tower"):
        text_only.embed(ids, _images(2))
