import math

import pytest
import torch

from toolkit.model.config import DecoderConfig
from toolkit.model.positions import POSITIONS, apply_rotary, build_positions
from toolkit.registry import UnknownNameError


def _cfg(positions="xpos", dim=16, heads=2):
    return DecoderConfig(vocab_size=8, dim=dim, layers=1, heads=heads, ffn_dim=8, max_len=32, positions=positions)


def _xpos_by_formula(x, n, L, base=512.0, theta=10000.0, downscale=False):
    """Rotate one head vector x (D,) at position n of L keys, straight from the xPos formula."""
    D = len(x)
    out = [0.0] * D
    centre = math.ceil(L / 2)
    for j in range(D // 2):
        angle = n / theta ** (j / (D / 2))
        zeta = (2 * j + 0.4 * D) / (1.4 * D)
        scale = zeta ** ((n - centre) / base)
        if downscale:
            scale = 1 / scale
        a, b = x[2 * j], x[2 * j + 1]
        out[2 * j] = (a * math.cos(angle) - b * math.sin(angle)) * scale
        out[2 * j + 1] = (b * math.cos(angle) + a * math.sin(angle)) * scale
    return out


def test_xpos_matches_the_formula():
    cfg = _cfg()
    pos = build_positions(cfg)
    L = 9
    ids = torch.arange(L)[None]
    q = torch.randn(1, 2, L, cfg.head_dim, dtype=torch.float64)
    k = torch.randn(1, 2, L, cfg.head_dim, dtype=torch.float64)
    qr, kr = apply_rotary(q, k, pos.tables(ids, ids))
    for h in range(2):
        for n in range(L):
            want_q = _xpos_by_formula(q[0, h, n].tolist(), n, L)
            want_k = _xpos_by_formula(k[0, h, n].tolist(), n, L, downscale=True)
            assert torch.allclose(qr[0, h, n], torch.tensor(want_q, dtype=torch.float64), atol=1e-6)
            assert torch.allclose(kr[0, h, n], torch.tensor(want_k, dtype=torch.float64), atol=1e-6)


def _score(kind, m, n, L, q, k):
    pos = build_positions(_cfg(kind, dim=q.numel(), heads=1))
    qpos, kpos = torch.arange(L)[None], torch.arange(L)[None]
    Q = torch.zeros(1, 1, L, q.numel(), dtype=torch.float64)
    K = torch.zeros_like(Q)
    Q[0, 0, m], K[0, 0, n] = q, k
    qr, kr = apply_rotary(Q, K, pos.tables(qpos, kpos))
    return float(qr[0, 0, m] @ kr[0, 0, n])


@pytest.mark.parametrize("kind", ["xpos", "rope"])
def test_score_depends_only_on_the_offset(kind):
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    base = _score(kind, 5, 2, 12, q, k)
    for shift, L in [(1, 12), (4, 12), (0, 7), (10, 20), (3, 31)]:
        assert _score(kind, 5 + shift, 2 + shift, L, q, k) == pytest.approx(base, rel=1e-6)


def test_xpos_is_rope_with_a_per_pair_decay_of_the_offset():
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    D = 16
    zeta = [(2 * j + 0.4 * D) / (1.4 * D) for j in range(D // 2)]
    m, n, L = 9, 2, 12
    # Score pair by pair: rope's contribution of pair j times zeta_j^((m - n)/512).
    want = 0.0
    for j in range(D // 2):
        qq = torch.zeros(16, dtype=torch.float64)
        qq[2 * j : 2 * j + 2] = q[2 * j : 2 * j + 2]
        want += _score("rope", m, n, L, qq, k) * zeta[j] ** ((m - n) / 512)
    assert _score("xpos", m, n, L, q, k) == pytest.approx(want, rel=1e-6)


def test_learned_and_none_positions():
    cfg = _cfg("learned")
    pos = build_positions(cfg)
    pos.init_weights()
    ids = torch.tensor([[0, 3, 5]])
    assert torch.equal(pos.embed(ids), pos.weight[[0, 3, 5]][None])
    assert pos.tables(ids, ids) is None
    with pytest.raises(ValueError, match="max_len=32"):
        pos.embed(torch.tensor([[40]]))
    none = build_positions(_cfg("none"))
    assert none.embed(ids) is None and none.tables(ids, ids) is None and not list(none.parameters())


def test_unknown_position_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="available: learned, none, rope, sinusoidal, xpos"):
        build_positions(_cfg("alibi"))
    assert sorted(POSITIONS) == ["learned", "none", "rope", "sinusoidal", "xpos"]


def test_sinusoidal_positions_match_transformers_kosmos2_table_with_its_offset():
    from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2TextSinusoidalPositionalEmbedding as Ref

    cfg = _cfg("sinusoidal")
    cfg.position_offset = 2
    pos = build_positions(cfg)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5]])
    ref = Ref.get_embedding(16, cfg.dim, padding_idx=None)  # rows: absolute table indices
    assert torch.allclose(pos.embed(ids)[0], ref[2:8], atol=1e-6)  # position 0 sits at index 2
    assert not list(pos.parameters()) and pos.tables(ids, ids) is None


def test_complex_rotation_equals_the_cos_sin_form():
    pos = build_positions(_cfg("xpos"))
    ids = torch.arange(12)[None].expand(2, 12)
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 12, 2, 8, generator=g).transpose(1, 2) for _ in range(2))  # the decoder's layout
    fast = apply_rotary(q, k, pos.tables(ids, ids))  # float32: one complex multiply
    ref = apply_rotary(q.double(), k.double(), pos.tables(ids, ids))  # float64: the cos/sin form
    for a, b in zip(fast, ref, strict=True):
        assert a.dtype == torch.float32 and (a.double() - b).abs().max() < 1e-5
