"""Import a Kosmos-2 checkpoint in Hugging Face format (a local directory) as an xmt run directory.

Kosmos-2 is xmt's architecture with other switches, not another model: its text decoder is Magneto
(Sub-LN) with torchscale's parameter names and sinusoidal absolute positions (index = position + pad
id + 1, inputs scaled by sqrt(d)); its vision tower is a CLIP ViT whose every token goes through the
post-LayerNorm and is L2-normalised; its connector is the `attentive` resampler. The importer maps
the config onto those switches, renames the weights, copies the tokenizer, and writes

    RUN/config.yaml                           a run config (model, tokenizer, special-token roles)
    RUN/tokenizer.json                        the checkpoint's tokenizer
    RUN/checkpoints/step-0000000/             model.safetensors + model.json, as training writes them
    RUN/import.json                           where it came from

into a temporary directory renamed at the end, so `xmt eval`, `xmt analyze` and the notebooks read it
like any trained run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml

from toolkit.config import ConfigError, to_dict
from toolkit.files import read_json
from toolkit.model.config import DecoderConfig, ModelConfig, ResamplerConfig, SpecialTokens, VisionConfig

# Kosmos-2 parameter prefixes -> xmt's (the names below the prefixes are the same on both sides).
PREFIXES = {
    "text_model.model.": "decoder.",
    "vision_model.model.": "vision.model.",
    "image_to_text_projection.": "resampler.",
}
LM_HEAD = "text_model.lm_head.weight"


class CheckpointFormatError(ValueError):
    """The directory is not a Kosmos-2 checkpoint xmt can read; the message names what is missing."""


def read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise CheckpointFormatError(
            f"{hf_dir}: no config.json; expected a Kosmos-2 checkpoint saved with save_pretrained"
        )
    cfg = read_json(path)
    if cfg.get("model_type") != "kosmos-2":
        raise CheckpointFormatError(f"{path}: model_type is '{cfg.get('model_type')}', not 'kosmos-2'")
    for key in ("text_config", "vision_config"):
        if key not in cfg:
            raise CheckpointFormatError(f"{path}: no '{key}' (a Kosmos-2 config has text_config and vision_config)")
    return cfg


def model_config(hf: dict, tokens: SpecialTokens) -> ModelConfig:
    """xmt's ModelConfig for a Kosmos-2 config.json (transformers' defaults fill missing keys)."""
    from transformers import Kosmos2Config

    full = Kosmos2Config(**{k: v for k, v in hf.items() if k in ("text_config", "vision_config", "latent_query_num")})
    t, v = full.text_config, full.vision_config
    if t.activation_function != "gelu" or v.hidden_act != "quick_gelu":
        raise CheckpointFormatError(
            f"activations {t.activation_function}/{v.hidden_act}: xmt's Kosmos-2 import reads gelu (text) and "
            "quick_gelu (vision)"
        )
    decoder = DecoderConfig(
        vocab_size=t.vocab_size,
        dim=t.embed_dim,
        layers=t.layers,
        heads=t.attention_heads,
        ffn_dim=t.ffn_dim,
        max_len=t.max_position_embeddings,
        dropout=t.dropout,
        attention_dropout=t.attention_dropout,
        activation_dropout=t.activation_dropout,
        norm="subln",
        init="standard",
        positions="sinusoidal",
        position_offset=t.pad_token_id + 1,
        layernorm_eps=t.layer_norm_eps,
        scale_embedding=t.scale_embedding,
        tie_embeddings=bool(full.tie_word_embeddings),
    )
    vision = VisionConfig(
        kind="clip",
        freeze="all",
        image_size=v.image_size,
        patch_size=v.patch_size,
        width=v.hidden_size,
        layers=v.num_hidden_layers,
        heads=v.num_attention_heads,
        mlp_dim=v.intermediate_size,
        channels=v.num_channels,
        post_layernorm=True,
        normalize=True,
    )
    return ModelConfig(decoder, vision, ResamplerConfig("attentive", full.latent_query_num, 0), tokens)


def read_weights(hf_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors (sharded or not) or pytorch_model.bin."""
    from safetensors.torch import load_file

    index = hf_dir / "model.safetensors.index.json"
    if (hf_dir / "model.safetensors").is_file():
        return load_file(str(hf_dir / "model.safetensors"))
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for name in files:
            weights.update(load_file(str(hf_dir / name)))
        return weights
    if (hf_dir / "pytorch_model.bin").is_file():
        return torch.load(hf_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointFormatError(f"{hf_dir}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def convert_weights(hf_weights: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in hf_weights.items():
        if name == LM_HEAD:
            if not tied:
                out["decoder.output_projection.weight"] = tensor
            continue
        prefix = next((p for p in PREFIXES if name.startswith(p)), None)
        if prefix is None:
            raise CheckpointFormatError(f"unexpected Kosmos-2 weight '{name}' (known prefixes: {', '.join(PREFIXES)})")
        out[PREFIXES[prefix] + name[len(prefix) :]] = tensor
    return out


def special_token_roles(tokenizer_file: Path) -> tuple[dict[str, str], SpecialTokens]:
    """Kosmos-2's token strings for xmt's roles, and their ids. It has <s> <pad> </s> <unk> <image>
    </image> but no placeholder token: image placeholders use an unused grounding token (the last
    <patch_index_NNNN>); the embeddings at placeholders are replaced by the image's anyway."""
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer.from_file(str(tokenizer_file))
    vocab = hf.get_vocab(with_added_tokens=True)
    strings = {"pad": "<pad>", "bos": "<s>", "eos": "</s>", "unk": "<unk>", "image": "<image>", "image_end": "</image>"}
    missing = [s for s in strings.values() if s not in vocab]
    if missing:
        raise CheckpointFormatError(f"{tokenizer_file}: missing Kosmos-2 special tokens {', '.join(missing)}")
    if "<image_pad>" in vocab:
        strings["image_pad"] = "<image_pad>"
    else:
        patches = sorted(t for t in vocab if t.startswith("<patch_index_"))
        if not patches:
            raise CheckpointFormatError(
                f"{tokenizer_file}: no <image_pad> or <patch_index_*> token to use as image placeholder"
            )
        strings["image_pad"] = patches[-1]
    return strings, SpecialTokens(**{role: vocab[s] for role, s in strings.items()})


def import_kosmos2(hf_dir: str | Path, out: str | Path) -> Path:
    """Convert the checkpoint in `hf_dir` into the run directory `out` (which must not exist yet)."""
    from toolkit.model.build import build_model, save_model
    from toolkit.train.checkpoint import write_manifest
    from toolkit.train.config import DataConfig, RunConfig, StageConfig
    from toolkit.train.rundir import CONFIG_FILE

    hf_dir, out = Path(hf_dir), Path(out)
    if not hf_dir.is_dir():
        raise CheckpointFormatError(f"{hf_dir}: not a directory")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not empty; choose a new run directory")
    hf_cfg = read_hf_config(hf_dir)
    tokenizer_file = hf_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise CheckpointFormatError(
            f"{hf_dir}: no tokenizer.json (save the fast tokenizer: AutoTokenizer.from_pretrained(DIR)"
            ".save_pretrained(DIR))"
        )
    strings, tokens = special_token_roles(tokenizer_file)
    cfg = model_config(hf_cfg, tokens)
    weights = convert_weights(read_weights(hf_dir), cfg.decoder.tie_embeddings)
    model = build_model(cfg, init=False)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise CheckpointFormatError(
            f"{hf_dir}: weights do not match the config (missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    model.load_state_dict(weights, strict=True)

    tmp = out.with_name(out.name + ".importing")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "checkpoints").mkdir(parents=True)
    shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
    final_tokenizer = (out / "tokenizer.json").resolve()
    run = RunConfig(
        name=f"kosmos2-import:{hf_dir.name}",
        model_preset="kosmos-1.3b",
        model=cfg,
        data=DataConfig(world=None, tokenizer=str(final_tokenizer), special_tokens=strings, streams=[]),
        stages=[StageConfig(name="imported", steps=1, warmup=0)],
        precision="fp32",
    )
    (tmp / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(run), sort_keys=False))
    checkpoint = tmp / "checkpoints" / "step-0000000"
    save_model(model, checkpoint)
    (checkpoint / "state.json").write_text(json.dumps({"step": 0, "stage": 0, "stage_step": 0, "data": None}) + "\n")
    write_manifest(checkpoint)
    counts = {"text_params": sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder."))}
    (tmp / "import.json").write_text(
        json.dumps(
            {"source": str(hf_dir.resolve()), "format": "kosmos-2 (Hugging Face)", "special_tokens": strings, **counts},
            indent=1,
        )
        + "\n"
    )
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out
