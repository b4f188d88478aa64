"""Resamplers: vision features (M, P, width) -> image embeddings (M, N, dim) for the decoder.

`attentive` is the Kosmos connector (Kosmos-2 `XConnector`, after Flamingo): a linear projection of
the features, then one multi-head cross-attention whose queries are N learned latents and whose keys
and values are [projected features; latents]. `linear` projects every feature token (N = P);
`mean` average-pools the tokens into N groups and projects them. Each says, through
`patch_weights(features)` (M, N, P), how its N image embeddings draw on the P vision tokens (the
attention study traces text -> image attention back onto the patch grid with it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import ConfigError
from toolkit.model.attention import AttentionMask, attend
from toolkit.model.config import ResamplerConfig
from toolkit.registry import Registry

Tensor = torch.Tensor
RESAMPLERS: Registry[type] = Registry("resampler")


class CrossAttention(nn.Module):
    """Queries attend over a separate key/value sequence (no mask, no positions)."""

    def __init__(self, dim: int, heads: int, dropout: float, backend: str) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"resampler: dim={dim} is not divisible by heads={heads}")
        self.heads, self.head_dim, self.dropout, self.backend = heads, dim // heads, dropout, backend
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, queries: Tensor, keys: Tensor) -> Tensor:
        M, N, _ = queries.shape
        S = keys.shape[1]
        q = (self.q_proj(queries) * self.head_dim**-0.5).view(M, N, self.heads, -1).transpose(1, 2)
        k = self.k_proj(keys).view(M, S, self.heads, -1).transpose(1, 2)  # (M, H, S, D)
        v = self.v_proj(keys).view(M, S, self.heads, -1).transpose(1, 2)
        out, _ = attend(
            q, k, v, AttentionMask(N, S, causal=False), self.backend, self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(M, N, -1))

    def init_weights(self) -> None:
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight, gain=2**-0.5)
            nn.init.zeros_(proj.bias)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)


@RESAMPLERS.register("attentive")
class AttentiveResampler(nn.Module):
    def __init__(
        self, cfg: ResamplerConfig, in_dim: int, in_tokens: int, dim: int, heads: int, dropout: float, backend: str
    ):
        super().__init__()
        self.num_tokens = cfg.num_latents
        self.dense = nn.Linear(in_dim, dim)
        self.latent_query = nn.Parameter(torch.empty(cfg.num_latents, dim))
        self.x_attn = CrossAttention(dim, cfg.heads or heads, dropout, backend)

    def init_weights(self) -> None:
        self.dense.reset_parameters()
        nn.init.normal_(self.latent_query)  # N(0, 1), as the Kosmos-2 connector
        self.x_attn.init_weights()

    def forward(self, features: Tensor) -> Tensor:
        x = self.dense(features)  # (M, P, dim)
        latents = self.latent_query.unsqueeze(0).expand(x.shape[0], -1, -1)  # (M, N, dim)
        return self.x_attn(latents, torch.cat([x, latents], dim=1))

    @torch.no_grad()
    def patch_weights(self, features: Tensor) -> Tensor:
        """(M, N, P): how much each latent draws on each vision token, averaged over heads; attention
        on the latents themselves is dropped and the rest renormalised."""
        M, P, _ = features.shape
        x = self.dense(features)
        latents = self.latent_query.unsqueeze(0).expand(M, -1, -1)
        keys = torch.cat([x, latents], 1)
        att = self.x_attn
        q = (att.q_proj(latents) * att.head_dim**-0.5).view(M, -1, att.heads, att.head_dim).transpose(1, 2)
        k = att.k_proj(keys).view(M, keys.shape[1], att.heads, att.head_dim).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2), -1).mean(1)[..., :P]  # (M, N, P)
        return w / w.sum(-1, keepdim=True)


@RESAMPLERS.register("linear")
class LinearResampler(nn.Module):
    def __init__(
        self, cfg: ResamplerConfig, in_dim: int, in_tokens: int, dim: int, heads: int, dropout: float, backend: str
    ):
        super().__init__()
        self.num_tokens = in_tokens
        self.dense = nn.Linear(in_dim, dim)

    def init_weights(self) -> None:
        self.dense.reset_parameters()

    def forward(self, features: Tensor) -> Tensor:
        return self.dense(features)

    def patch_weights(self, features: Tensor) -> Tensor:
        """(M, P, P): each image embedding is its own vision token."""
        M, P, _ = features.shape
        return torch.eye(P).expand(M, P, P).clone()


@RESAMPLERS.register("mean")
class MeanPoolResampler(nn.Module):
    def __init__(
        self, cfg: ResamplerConfig, in_dim: int, in_tokens: int, dim: int, heads: int, dropout: float, backend: str
    ):
        super().__init__()
        if cfg.num_latents > in_tokens:
            raise ConfigError(f"resampler.num_latents={cfg.num_latents} exceeds the {in_tokens} vision tokens to pool")
        self.num_tokens = cfg.num_latents
        self.dense = nn.Linear(in_dim, dim)

    def init_weights(self) -> None:
        self.dense.reset_parameters()

    def forward(self, features: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool1d(features.transpose(1, 2), self.num_tokens).transpose(1, 2)  # (M, N, in_dim)
        return self.dense(pooled)

    def patch_weights(self, features: Tensor) -> Tensor:
        """(M, N, P): the pooling weights of each group over the vision tokens."""
        M, P, _ = features.shape
        pool = F.adaptive_avg_pool1d(torch.eye(P)[None], self.num_tokens)[0].T  # (N, P)
        return (pool / pool.sum(-1, keepdim=True)).expand(M, -1, -1).clone()


def build_resampler(
    cfg: ResamplerConfig, in_dim: int, in_tokens: int, dim: int, heads: int, dropout: float, backend: str
):
    return RESAMPLERS.get(cfg.kind)(cfg, in_dim, in_tokens, dim, heads, dropout, backend)
