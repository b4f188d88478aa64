"""Model configuration: decoder, vision tower, resampler, special token ids.

Names that select an implementation (attention backend, position encoding, vision kind, resampler
kind) are checked against their registries when the model is built; the error lists valid names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.config import ConfigError


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{key}: unknown value '{value}'; valid: {', '.join(options)}")


@dataclass
class DecoderConfig:
    vocab_size: int = 64007  # tokenizer vocabulary (Kosmos-1: 64,007, SentencePiece)
    dim: int = 2048  # hidden size d
    layers: int = 24  # number of decoder blocks N (Magneto's gamma uses it)
    heads: int = 32  # attention heads; head_dim = dim // heads
    ffn_dim: int = 8192  # FFN inner size
    max_len: int = 2048  # longest sequence (sizes learned position tables; xPos/RoPE extrapolate)
    dropout: float = 0.1  # residual and embedding dropout
    attention_dropout: float = 0.1  # dropout on attention probabilities
    activation_dropout: float = 0.0  # dropout after the FFN activation
    norm: str = "subln"  # subln: Magneto (pre-LN + LN before out_proj and fc2) | preln: plain pre-LN
    init: str = "magneto"  # magneto: scale fc1/fc2/out_proj/v_proj by sqrt(log 2N) | standard
    positions: str = "xpos"  # xpos | rope | learned | sinusoidal | none (see toolkit.model.positions)
    position_offset: int = 0  # sinusoidal: index of position 0 in the table (Kosmos-2: 2)
    xpos_scale_base: int = 512  # xPos: queries scaled by zeta^(c/scale_base), keys by its inverse
    rope_theta: float = 10000.0  # rotary base for xpos and rope
    attention: str = "auto"  # auto | xformers | sdpa | eager (see toolkit.model.attention)
    layernorm_eps: float = 1e-5
    scale_embedding: bool = False  # multiply input embeddings by sqrt(dim) (torchscale default: off)
    tie_embeddings: bool = True  # output projection shares the input embedding matrix
    gradient_checkpointing: bool = False  # recompute each block in backward to save memory
    compile: bool = False  # torch.compile each decoder block (applied after init by build_model)

    def __post_init__(self) -> None:
        _choice("decoder.norm", self.norm, ("subln", "preln"))
        _choice("decoder.init", self.init, ("magneto", "standard"))
        for key in ("vocab_size", "dim", "layers", "heads", "ffn_dim", "max_len"):
            if getattr(self, key) < 1:
                raise ConfigError(f"decoder.{key}={getattr(self, key)}: must be >= 1")
        if self.dim % self.heads:
            raise ConfigError(f"decoder.dim={self.dim} is not divisible by decoder.heads={self.heads}")
        if (self.dim // self.heads) % 2:
            raise ConfigError(f"decoder head_dim={self.dim // self.heads} must be even for rotary positions")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass
class TowerPretrainConfig:
    """Supervised pretraining of a `vit` tower before the MLLM trains (the tiny world's stand-in for
    CLIP): colour and shape of plain shapes drawn by the world's renderer, never a category."""

    steps: int = 0  # 0: none (`vision.path`, when set, must hold a tower already)
    batch_size: int = 64  # labelled renders per step
    lr: float = 2e-3
    seed: int = 0  # one tower for every training seed, as Kosmos-1 used one CLIP

    def __post_init__(self) -> None:
        for key, low in (("steps", 0), ("batch_size", 1), ("seed", 0)):
            if getattr(self, key) < low:
                raise ConfigError(f"vision.pretrain.{key}: must be >= {low}, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"vision.pretrain.lr: must be > 0, got {self.lr}")


@dataclass
class VisionConfig:
    kind: str = "clip"  # clip (transformers CLIPVisionModel) | vit (small ViT from scratch) | none (text-only LLM)
    # clip: local Hugging Face directory to load weights (and shape) from. vit: a tower directory
    # (tower.safetensors + tower.json), built there by `vision.pretrain` when missing (default with
    # pretraining: towers/<stem>-<digest of the tower's settings> beside the run's world).
    path: str | None = None
    freeze: str = "all_but_last"  # all | all_but_last | none: which tower parameters stay trainable
    image_size: int = 224  # input resolution (pixels, square)
    patch_size: int = 14
    # vit: how pixels become patch tokens. patch: one strided convolution per patch (ViT) | conv: a stack
    # of 3x3 stride-2 convolutions down to the patch grid, then a 1x1 projection (Xiao et al. 2021,
    # "Early convolutions help transformers see better"); patch_size must then be a power of 2.
    stem: str = "patch"
    width: int = 1024  # tower hidden size (CLIP ViT-L/14: 1024)
    layers: int = 24
    heads: int = 16
    mlp_dim: int = 4096
    channels: int = 3
    post_layernorm: bool = False  # clip: apply the tower's post-LayerNorm to every token (Kosmos-2)
    normalize: bool = False  # L2-normalise each feature vector before the resampler (Kosmos-2)
    pretrain: TowerPretrainConfig = field(default_factory=TowerPretrainConfig)

    def __post_init__(self) -> None:
        for key in ("image_size", "patch_size", "width", "heads", "mlp_dim", "channels"):
            if getattr(self, key) < 1:
                raise ConfigError(f"vision.{key}={getattr(self, key)}: must be >= 1")
        if self.layers < 0:
            raise ConfigError(f"vision.layers={self.layers}: must be >= 0 (0: a convolutional tower)")
        _choice("vision.freeze", self.freeze, ("all", "all_but_last", "none"))
        _choice("vision.stem", self.stem, ("patch", "conv"))
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise ConfigError(f"vision.stem=conv needs a power-of-2 vision.patch_size, not {self.patch_size}")
        if self.post_layernorm and self.kind != "clip":
            raise ConfigError(f"vision.post_layernorm applies to vision.kind: clip, not '{self.kind}'")
        if self.pretrain.steps and self.kind not in ("vit", "none"):  # none: the LLM arm, nothing to build
            raise ConfigError(f"vision.pretrain.steps={self.pretrain.steps} needs vision.kind: vit, not '{self.kind}'")
        if self.image_size % self.patch_size:
            raise ConfigError(
                f"vision.image_size={self.image_size} is not divisible by vision.patch_size={self.patch_size}"
            )

    @property
    def enabled(self) -> bool:
        return self.kind != "none"


@dataclass
class ResamplerConfig:
    kind: str = "attentive"  # attentive (latent queries over [features; latents]) | linear | mean
    num_latents: int = 64  # image embeddings per image for attentive/mean (Kosmos-1: 64)
    heads: int = 0  # attentive: heads of the cross-attention (0 = decoder heads)


@dataclass
class SpecialTokens:
    """Ids the model itself must know; the tokenizer reserves them at the start of its vocabulary."""

    pad: int = 0
    bos: int = 1  # <s>
    eos: int = 2  # </s>
    unk: int = 3
    image: int = 4  # <image>
    image_end: int = 5  # </image>
    image_pad: int = 6  # placeholder; each image's embeddings replace a run of these between the delimiters


@dataclass
class ModelConfig:
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    tokens: SpecialTokens = field(default_factory=SpecialTokens)
