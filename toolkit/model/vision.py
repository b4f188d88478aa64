"""Vision towers: CLIP through transformers, or a small ViT (from scratch, or a pretrained tower).

A tower maps pixels (M, C, H, W) to features (M, P, width) and exposes `last_layer()` for the freeze
policy (the paper freezes all CLIP parameters except the last layer).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from toolkit.config import ConfigError
from toolkit.model.attention import AttentionMask, attend
from toolkit.model.config import VisionConfig
from toolkit.registry import Registry, UnknownNameError

Tensor = torch.Tensor
log = logging.getLogger(__name__)
VISION: Registry[type] = Registry("vision tower")
TOWER_WEIGHTS = "tower.safetensors"  # a pretrained `vit` tower in its directory (toolkit.train.tower)


# VisionConfig field -> CLIPVisionConfig field: the one mapping between the two, used both ways.
CLIP_FIELDS = {
    "width": "hidden_size",
    "mlp_dim": "intermediate_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "image_size": "image_size",
    "patch_size": "patch_size",
    "channels": "num_channels",
}


def _clip_config(cfg: VisionConfig):
    from transformers import CLIPVisionConfig

    if cfg.path:
        path = Path(cfg.path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"vision.path={cfg.path}: no config.json there; expected a local Hugging Face CLIP "
                "directory (written by save_pretrained)"
            )
        hf = CLIPVisionConfig.from_pretrained(str(path), local_files_only=True)
    else:
        hf = CLIPVisionConfig(**{theirs: getattr(cfg, ours) for ours, theirs in CLIP_FIELDS.items()})
    return hf


@VISION.register("clip")
class ClipVision(nn.Module):
    """transformers' CLIPVisionModel; features are the last layer's hidden states (CLS + patches)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        self.cfg = cfg
        hf = _clip_config(cfg)
        self.model = CLIPVisionModel(hf)
        self.out_dim = hf.hidden_size
        self.num_tokens = (hf.image_size // hf.patch_size) ** 2 + 1
        self.image_size = hf.image_size

    def last_layer(self) -> nn.Module:
        inner = getattr(self.model, "vision_model", self.model)  # transformers < 5 nests the tower
        return inner.encoder.layers[-1]

    def init_weights(self) -> None:
        """Random init as transformers does it, or the weights from `vision.path`."""
        if self.cfg.path:
            self.load_pretrained(self.cfg.path)
        else:
            self.model.apply(self.model._init_weights)

    def load_pretrained(self, path: str) -> None:
        from transformers import CLIPVisionModel

        try:
            loaded = CLIPVisionModel.from_pretrained(str(path), local_files_only=True)
        except OSError as err:
            raise FileNotFoundError(f"vision.path={path}: cannot load CLIP weights: {err}") from err
        self.model.load_state_dict(loaded.state_dict())

    def forward(self, pixels: Tensor) -> Tensor:
        features = self.model(pixel_values=pixels).last_hidden_state  # (M, P+1, width)
        if self.cfg.post_layernorm:
            features = getattr(self.model, "vision_model", self.model).post_layernorm(features)
        return features


class ViTBlock(nn.Module):
    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln_1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ln_2 = nn.LayerNorm(cfg.width)
        self.fc1 = nn.Linear(cfg.width, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, cfg.width)

    def forward(self, x: Tensor) -> Tensor:
        M, P, W = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(M, P, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        q = q * (W // self.heads) ** -0.5
        out, _ = attend(q, k, v, AttentionMask(P, P, causal=False), "auto")  # (M, H, P, D)
        x = x + self.proj(out.transpose(1, 2).reshape(M, P, W))
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


def conv_stem(cfg: VisionConfig) -> nn.Sequential:
    """log2(patch_size) 3x3 stride-2 convolutions (channels doubling up to `width`, GELU between),
    then a 1x1 projection: the same patch grid as a patch embedding, from local features."""
    n = cfg.patch_size.bit_length() - 1
    widths = [max(8, cfg.width >> (n - 1 - i)) for i in range(n)]
    layers: list[nn.Module] = []
    channels = cfg.channels
    for w in widths:
        layers += [nn.Conv2d(channels, w, 3, stride=2, padding=1), nn.GELU()]
        channels = w
    layers.append(nn.Conv2d(channels, cfg.width, 1))
    return nn.Sequential(*layers)


@VISION.register("vit")
class SmallViT(nn.Module):
    """A pre-LN ViT without CLS token for the synthetic world (patch embedding + learned positions)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grid = cfg.image_size // cfg.patch_size
        self.out_dim = cfg.width
        self.num_tokens = grid * grid
        self.image_size = cfg.image_size
        self.patch_embed = (
            conv_stem(cfg)
            if cfg.stem == "conv"
            else nn.Conv2d(cfg.channels, cfg.width, cfg.patch_size, stride=cfg.patch_size)
        )
        self.pos_embed = nn.Parameter(torch.empty(1, grid * grid, cfg.width))
        self.blocks = nn.ModuleList(ViTBlock(cfg) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.width)

    def last_layer(self) -> nn.Module:
        return self.blocks[-1] if len(self.blocks) else self.patch_embed  # layers: 0 is a convolutional tower

    def init_weights(self) -> None:
        """Random init, or the pretrained tower in `vision.path`."""
        if self.cfg.path:
            load_tower(self, self.cfg.path)
            return
        for module in self.patch_embed.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        nn.init.normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.patch_embed(pixels).flatten(2).transpose(1, 2) + self.pos_embed  # (M, P, width)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


def load_tower(tower: nn.Module, path: str | Path) -> None:
    """Fill `tower` from `path`/tower.safetensors; every tensor must match in name and shape."""
    weights = Path(path) / TOWER_WEIGHTS
    if not weights.is_file():
        raise ConfigError(
            f"vision.path={path}: no {TOWER_WEIGHTS} there; set vision.pretrain.steps to build a tower there"
        )
    from safetensors.torch import load_file

    state = load_file(str(weights))
    own = tower.state_dict()
    wrong = sorted(k for k in set(own) | set(state) if k not in own or k not in state or own[k].shape != state[k].shape)
    if wrong:
        raise ConfigError(
            f"{weights}: the tower there has another architecture than model.vision (tensors {wrong[:4]})"
        )
    tower.load_state_dict(state)


def build_vision(cfg: VisionConfig) -> nn.Module:
    if cfg.kind not in VISION:  # `none` is valid too: it builds no tower at all
        raise UnknownNameError(f"unknown vision tower '{cfg.kind}'; available: {', '.join([*VISION, 'none'])}")
    return VISION.get(cfg.kind)(cfg)


def apply_freeze(tower: nn.Module, policy: str) -> dict[str, int]:
    """Set requires_grad on the tower by policy all | all_but_last | none; log and return the counts."""
    for p in tower.parameters():
        p.requires_grad_(policy == "none")
    if policy == "all_but_last":
        for p in tower.last_layer().parameters():
            p.requires_grad_(True)
    counts = {
        "trainable": sum(p.numel() for p in tower.parameters() if p.requires_grad),
        "frozen": sum(p.numel() for p in tower.parameters() if not p.requires_grad),
    }
    log.info("vision freeze=%s: %d trainable, %d frozen parameters", policy, counts["trainable"], counts["frozen"])
    return counts
