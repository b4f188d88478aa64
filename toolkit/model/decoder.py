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
    """Keys (rotated) and values per layer, and what the next tokens need to continue: which cached
    keys are padding, the position of the next real token, and the xPos `centre` the keys were rotated
    with (only position offsets enter q.k, so the centre need not move while decoding).

    Keys and values live in buffers with free room at the end: a decoding step writes its token into
    the room instead of copying the whole cache (the room grows by a quarter when full). A cache made
    from another shares its buffers; once a cache has been extended, a second forward from it (two
    continuations of one prompt) copies its part first, so both stay correct.
    """

    keys: list[Tensor] = field(default_factory=list)  # per layer (B, H, capacity, D); slots >= length are free
    values: list[Tensor] = field(default_factory=list)
    length: int = 0
    valid: Tensor | None = None  # (B, length) bool, False = padding; None: no padding anywhere
    next_position: Tensor | None = None  # (B, 1) long: the position the next real token gets by default
    centre: int = 0
    rotary: RotaryTables | None = None  # tables for positions 0..L-1 with this centre, read by each step
    start: int = 0  # where the tokens of the forward that made this cache begin
    extended: bool = False  # a longer cache was made from this one (and may write into the shared room)

    def layer(self, i: int) -> tuple[Tensor, Tensor]:
        """Layer i's cached keys and values, (B, H, length, D) each."""
        return self.keys[i][:, :, : self.length], self.values[i][:, :, : self.length]

    def extend(self, new_tokens: int, **state) -> KVCache:
        """The cache after `new_tokens` more tokens; each layer fills its part with `append`. When this
        cache was extended before, the new one gets only views of its part, which `append` copies."""
        if not self.extended:  # the newest cache on these buffers: the next one writes into their room
            keys, values = list(self.keys), list(self.values)
        else:
            keys = [k[:, :, : self.length] for k in self.keys]
            values = [v[:, :, : self.length] for v in self.values]
        self.extended = True
        return KVCache(keys, values, self.length + new_tokens, **state, start=self.length)

    def append(self, i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store layer i's new keys and values (B, H, T, D) after the cached ones; return all of them."""
        start, end = self.start, self.length
        fresh = i == len(self.keys)  # a layer with nothing cached yet
        if fresh or self.keys[i].shape[2] < end:  # no room left (or a copied cache's exact-size views)
            room = end + max(64, end // 4)
            grown = []
            for new, old in ((k, None if fresh else self.keys[i]), (v, None if fresh else self.values[i])):
                buf = new.new_empty(*new.shape[:2], room, new.shape[3])
                if start:
                    buf[:, :, :start] = old[:, :, :start]
                grown.append(buf)
            if fresh:
                self.keys.append(grown[0])
                self.values.append(grown[1])
            else:
                self.keys[i], self.values[i] = grown
        keys, values = self.keys[i], self.values[i]
        keys[:, :, start:end] = k
        values[:, :, start:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def reorder(self, index: Tensor) -> KVCache:
        """Select batch rows (beam search)."""
        layers = [self.layer(i) for i in range(len(self.keys))]
        return KVCache(
            [k.index_select(0, index) for k, _ in layers],
            [v.index_select(0, index) for _, v in layers],
            self.length,
            None if self.valid is None else self.valid.index_select(0, index),
            self.next_position.index_select(0, index),
            self.centre,
            self.rotary,
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
        cache: KVCache | None = None,
        index: int = 0,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """With `cache` (extended for these tokens), this layer's (`index`) new keys and values are
        stored in it and the queries attend over all of them."""
        B, T, _ = x.shape
        q = (self.q_proj(x) * self.head_dim**-0.5).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)
        v = self.v_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, k, rotary)  # the new tokens only; cached keys are rotated already
        if cache is not None:
            k, v = cache.append(index, k, v)
        backend = "eager" if need_weights else self.backend
        out, weights = attend(q, k, v, mask, backend, self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(B, T, -1)  # (B, T, dim)
        return self.out_proj(self.inner_attn_ln(out)), weights


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
        if self.training:  # dropout modules are called only in training (each call costs ~4 us when decoding)
            h = self.activation_dropout(h)
        return self.fc2(self.ffn_layernorm(h))


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

    def forward(self, x, mask, rotary, cache=None, index=0, need_weights=False):
        h, weights = self.self_attn(self.self_attn_layer_norm(x), mask, rotary, cache, index, need_weights)
        h = self.hook_attn_out(h)
        x = x + (self.dropout(h) if self.training else h)
        h = self.hook_mlp_out(self.ffn(self.final_layer_norm(x)))
        x = x + (self.dropout(h) if self.training else h)
        return self.hook_resid_post(x), weights


@dataclass
class StepInputs:
    """What every layer of one forward reads besides the hidden states (Decoder.prepare)."""

    position_ids: Tensor  # (B, T)
    mask: AttentionMask
    rotary: RotaryTables | None  # None for position encodings without rotation
    cache: KVCache | None  # the cache grown by this forward's tokens (layers append to it)


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
        step = self.prepare(inputs_embeds, attention_mask, position_ids, cache, use_cache)
        x = inputs_embeds * self.embed_scale
        absolute = self.positions.embed(step.position_ids)
        if absolute is not None:
            x = x + absolute
        if self.training:
            x = self.dropout(x)
        attentions = [] if need_weights else None
        for i, layer in enumerate(self.layers):
            args = (x, step.mask, step.rotary, step.cache, i, need_weights)
            if self.cfg.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, weights = checkpoint(layer, *args, use_reentrant=False)
            else:
                x, weights = layer(*args)
            if attentions is not None:
                attentions.append(weights)
        return DecoderOutput(self.layer_norm(x), step.cache if use_cache else None, attentions)

    def prepare(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
        cache: KVCache | None,
        use_cache: bool,
    ) -> StepInputs:
        """Positions, the attention mask, the rotary tables and the cache grown by this forward's tokens.

        Default positions count real tokens only (left padding does not shift them) and continue the
        cache's; the mask covers cached keys that are padding; while decoding, the rotary tables are
        made once for positions up to twice the cache length and each step reads its rows.
        """
        B, T, _ = inputs_embeds.shape
        device = inputs_embeds.device
        cached = cache is not None and cache.length > 0
        valid = (
            attention_mask.bool() if attention_mask is not None else torch.ones(B, T, dtype=torch.bool, device=device)
        )
        start = cache.next_position if cached else torch.zeros(B, 1, dtype=torch.long, device=device)
        default_positions = position_ids is None
        if default_positions:
            # Positions count real tokens only (left padding does not shift them).
            position_ids = start.expand(B, T) if T == 1 else (valid.long().cumsum(dim=1) - 1).clamp(min=0) + start
            next_position = start + valid.sum(dim=1, keepdim=True)
        else:
            last = torch.where(valid, position_ids + 1, 0).amax(dim=1, keepdim=True)
            next_position = torch.maximum(start, last)
        k_len = T + (cache.length if cached else 0)
        # Padding: None when there is none. Without a mask there is none to add; with one, its rows are
        # checked once on the host (not under torch.compile, where a host sync would split the graph).
        k_valid = cache.valid if cached else None
        padded = attention_mask is not None and (torch.compiler.is_compiling() or not bool(valid.all()))
        if padded or k_valid is not None:
            if cached:
                old = k_valid if k_valid is not None else valid.new_ones(B, k_len - T)
                k_valid = torch.cat([old, valid], dim=1)
            else:
                k_valid = valid
        mask = AttentionMask(T, k_len, causal=True, key_valid=k_valid, device=device)
        centre = cache.centre if cached else -(-T // 2)  # xPos: the prompt's centre, kept while decoding
        table = cache.rotary if cached else None
        if use_cache and default_positions and self.positions.rotary:
            # Decoding: tables for every position up to twice the cache length are made once (default
            # positions count real tokens, so they stay below the number of keys) and each step reads
            # its rows, instead of computing angles and xPos scales again.
            if table is None or table.q_cos.shape[2] < k_len:
                span = torch.arange(max(2 * k_len, self.cfg.max_len), device=device)[None]
                table = self.positions.tables(span, span, centre)
            rotary = table.select(position_ids)
        else:
            rotary = self.positions.tables(position_ids, position_ids, centre)

        new_cache = None
        if use_cache or cached:
            state = {"valid": k_valid, "next_position": next_position, "centre": centre, "rotary": table}
            new_cache = (cache if cache is not None else KVCache()).extend(T, **state)
        return StepInputs(position_ids, mask, rotary, new_cache)
