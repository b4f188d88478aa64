"""The Magneto (Sub-LN) Transformer decoder of Kosmos-1, with ablation switches.

Block (torchscale names, so weights map one to one):
    x = x + dropout(out_proj(inner_attn_ln(attn(self_attn_layer_norm(x)))))
    x = x + dropout(fc2(ffn_layernorm(gelu(fc1(final_layer_norm(x))))))
`norm: preln` drops inner_attn_ln and ffn_layernorm. `init: magneto` multiplies every fc1, fc2,
out_proj and v_proj parameter (weights and biases) by sqrt(log(2N)) after standard init.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from toolkit.model.attention import AttentionMask, attend, check_backend_name
from toolkit.model.config import DecoderConfig
from toolkit.model.positions import RotaryTables, apply_rotary, build_positions

Tensor = torch.Tensor
MAGNETO_SCALED = ("fc1", "fc2", "out_proj", "v_proj")


@dataclass
class KVCache:
    """Keys (rotated) and values per layer, with their positions; new tokens are rotated with the
    same xPos `centre` (only position offsets enter q.k, so the centre need not move)."""

    keys: list[Tensor] = field(default_factory=list)  # per layer (B, H, S, D)
    values: list[Tensor] = field(default_factory=list)
    positions: Tensor | None = None  # (B, S) position ids of the cached keys
    valid: Tensor | None = None  # (B, S) bool, False = padding
    centre: int = 0  # xPos centre the cached keys were rotated with

    @property
    def length(self) -> int:
        return 0 if self.positions is None else self.positions.shape[1]

    def reorder(self, index: Tensor) -> KVCache:
        """Select batch rows (beam search)."""
        return KVCache(
            [k.index_select(0, index) for k in self.keys],
            [v.index_select(0, index) for v in self.values],
            self.positions.index_select(0, index),
            self.valid.index_select(0, index),
            self.centre,
        )


class SelfAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.backend = cfg.attention
        self.dropout = cfg.attention_dropout
        self.q_proj = nn.Linear(cfg.dim, cfg.dim)
        self.k_proj = nn.Linear(cfg.dim, cfg.dim)
        self.v_proj = nn.Linear(cfg.dim, cfg.dim)
        self.out_proj = nn.Linear(cfg.dim, cfg.dim)
        self.inner_attn_ln = nn.LayerNorm(cfg.dim, eps=cfg.layernorm_eps) if cfg.norm == "subln" else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: AttentionMask,
        rotary: RotaryTables | None,
        past: tuple[Tensor, Tensor] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        B, T, _ = x.shape
        q = (self.q_proj(x) * self.head_dim**-0.5).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        v = self.v_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, rotary)  # the new tokens only; cached keys are rotated already
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        present = (k, v)
        backend = "eager" if need_weights else self.backend
        out, weights = attend(q, k, v, mask, backend, self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, T, -1)  # (B, T, dim)
        return self.out_proj(self.inner_attn_ln(out)), present, weights


class FeedForward(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.dim)
        self.activation_dropout = nn.Dropout(cfg.activation_dropout)
        self.ffn_layernorm = nn.LayerNorm(cfg.ffn_dim, eps=cfg.layernorm_eps) if cfg.norm == "subln" else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        # GELU of a half-precision input is computed in fp32 and rounded once (as fc2 would round it),
        # so under autocast h stays in bf16 and, on the CPU, so does the Sub-LN: no casts in the FFN.
        h = F.gelu(self.fc1(x))
        return self.fc2(self.ffn_layernorm(self.activation_dropout(h)))


class HookPoint(nn.Identity):
    """A named place in the forward pass (identity); analysis attaches hooks to it temporarily."""


class DecoderLayer(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(cfg.dim, eps=cfg.layernorm_eps)
        self.self_attn = SelfAttention(cfg)
        self.final_layer_norm = nn.LayerNorm(cfg.dim, eps=cfg.layernorm_eps)
        self.ffn = FeedForward(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.hook_attn_out = HookPoint()  # (B, T, dim) attention sublayer output, before the residual add
        self.hook_mlp_out = HookPoint()  # (B, T, dim) FFN sublayer output, before the residual add
        self.hook_resid_post = HookPoint()  # (B, T, dim) the residual stream after this block

    def forward(self, x, mask, rotary, past=None, need_weights=False):
        h, present, weights = self.self_attn(self.self_attn_layer_norm(x), mask, rotary, past, need_weights)
        x = x + self.dropout(self.hook_attn_out(h))
        x = x + self.dropout(self.hook_mlp_out(self.ffn(self.final_layer_norm(x))))
        return self.hook_resid_post(x), present, weights


@dataclass
class DecoderOutput:
    hidden: Tensor  # (B, T, dim) after the final LayerNorm
    cache: KVCache | None = None
    attentions: list[Tensor] | None = None  # per layer (B, H, Tq, Tk), only when asked for


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        check_backend_name(cfg.attention)
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.positions = build_positions(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.layer_norm = nn.LayerNorm(cfg.dim, eps=cfg.layernorm_eps)
        self.output_projection = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.embed_scale = math.sqrt(cfg.dim) if cfg.scale_embedding else 1.0

    @property
    def magneto_gamma(self) -> float:
        return math.sqrt(math.log(2 * self.cfg.layers))

    def init_weights(self) -> None:
        """Standard init (torchscale/fairseq), then Magneto's scaling when `init: magneto`."""
        d = self.cfg.dim
        nn.init.normal_(self.embed_tokens.weight, std=d**-0.5)
        self.positions.init_weights()
        for layer in self.layers:
            attn = layer.self_attn
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
                nn.init.xavier_uniform_(proj.weight, gain=2**-0.5)
                nn.init.zeros_(proj.bias)
            nn.init.xavier_uniform_(attn.out_proj.weight)
            nn.init.zeros_(attn.out_proj.bias)
            layer.ffn.fc1.reset_parameters()
            layer.ffn.fc2.reset_parameters()
            for module in layer.modules():
                if isinstance(module, nn.LayerNorm):
                    module.reset_parameters()
        self.layer_norm.reset_parameters()
        if self.output_projection is not None:
            nn.init.normal_(self.output_projection.weight, std=d**-0.5)
        if self.cfg.init == "magneto":
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if any(key in name for key in MAGNETO_SCALED):
                        p.mul_(self.magneto_gamma)

    @property
    def output_weight(self) -> Tensor:
        """(vocab, dim): the output projection, or the token embeddings when they are tied."""
        return self.embed_tokens.weight if self.output_projection is None else self.output_projection.weight

    def logits(self, hidden: Tensor) -> Tensor:
        return F.linear(hidden, self.output_weight)

    def forward(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
        need_weights: bool = False,
    ) -> DecoderOutput:
        """inputs_embeds (B, T, dim); attention_mask (B, T) bool, True = real token; position_ids (B, T).

        With `cache`, inputs are the next T tokens after the cached ones.
        """
        B, T, _ = inputs_embeds.shape
        device = inputs_embeds.device
        valid = (
            attention_mask.bool() if attention_mask is not None else torch.ones(B, T, dtype=torch.bool, device=device)
        )
        if position_ids is None:
            position_ids = default_position_ids(valid, cache)
        k_pos = position_ids if cache is None or cache.length == 0 else torch.cat([cache.positions, position_ids], 1)
        k_valid = valid if cache is None or cache.length == 0 else torch.cat([cache.valid, valid], 1)
        # Skip the padding mask (and the host sync that checks it) when no mask was ever given. Under
        # torch.compile the mask is kept as given: a host sync there would split the graph.
        eager = not torch.compiler.is_compiling()
        unpadded = attention_mask is None and (
            cache is None or cache.length == 0 or (eager and bool(cache.valid.all()))
        )
        if not unpadded and eager and bool(k_valid.all()):
            unpadded = True
        mask = AttentionMask(T, k_pos.shape[1], causal=True, key_valid=None if unpadded else k_valid, device=device)
        cached = cache is not None and cache.length > 0
        centre = cache.centre if cached else -(-T // 2)  # xPos: the prompt's centre, kept while decoding
        rotary = self.positions.tables(position_ids, position_ids, centre)

        x = inputs_embeds * self.embed_scale
        absolute = self.positions.embed(position_ids)
        if absolute is not None:
            x = x + absolute
        x = self.dropout(x)

        new_cache = KVCache(positions=k_pos, valid=k_valid, centre=centre) if use_cache else None
        attentions = [] if need_weights else None
        for i, layer in enumerate(self.layers):
            past = (cache.keys[i], cache.values[i]) if cache is not None and cache.length else None
            if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, present, weights = checkpoint(layer, x, mask, rotary, past, need_weights, use_reentrant=False)
            else:
                x, present, weights = layer(x, mask, rotary, past, need_weights)
            if new_cache is not None:
                new_cache.keys.append(present[0])
                new_cache.values.append(present[1])
            if attentions is not None:
                attentions.append(weights)
        return DecoderOutput(self.layer_norm(x), new_cache, attentions)


def default_position_ids(valid: Tensor, cache: KVCache | None = None) -> Tensor:
    """Positions count real tokens only (left padding does not shift them); continue after a cache."""
    start = 0 if cache is None or cache.length == 0 else (cache.positions.max(dim=1).values + 1)[:, None]
    if cache is not None and cache.length:
        start = torch.where(cache.valid.any(dim=1, keepdim=True), start, torch.zeros_like(start))
    return (valid.long().cumsum(dim=1) - 1).clamp(min=0) + start
