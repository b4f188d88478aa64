"""Tiny random Hugging Face checkpoints built locally (a tokenizer trained here, configs made with
transformers, written with save_pretrained), in the formats the real ones come in."""

from __future__ import annotations

from pathlib import Path

import torch

CORPUS = [
    "The color of the lemon is yellow .",
    "A photo of a red apple .",
    "Question: what is this? Answer: a cat .",
    "Is the tiger larger than the mouse? Yes .",
    "green blue purple orange brown white black pink gray",
] * 20
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
# chat templates in the style of the real ones (a user turn, images in place, the assistant's turn opened)
LLAVA_CHAT = (
    "{% for m in messages %}{{ m['role'] | upper }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
IDEFICS3_CHAT = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %} {{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
QWEN_CHAT = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}{% endfor %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def tokenizer(specials=SPECIALS):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=list(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def text_config(vocab: int, tok):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


def tiny_llama(out: Path, seed: int = 0) -> Path:
    from transformers import LlamaForCausalLM

    tok = tokenizer()
    torch.manual_seed(seed)
    LlamaForCausalLM(text_config(len(tok), tok)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def tiny_llava(out: Path, seed: int = 0, chat_template: str | None = None) -> Path:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config(len(tok), tok),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
    )
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(out)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    processor.save_pretrained(out)
    return out


QWEN_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "<pad>",
    "<|vision_start|>",
    "<|image_pad|>",
    "<|vision_end|>",
    "<|video_pad|>",
]


def tiny_qwen2_vl(out: Path, seed: int = 0, version: str = "2", chat_template: str | None = None) -> Path:
    """A tiny Qwen2-VL (version "2") or Qwen2.5-VL ("2.5": windowed attention in the tower, full
    attention in its last block): patch 4, 2x2 merge, images of 16x16 to 48x48 pixels (dynamic
    resolution); `chat_template` is written as the processor's chat_template.jinja."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = tokenizer(QWEN_SPECIALS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text = text_config(len(tok), tok).to_dict()
    text.update(rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]})
    text = {k: v for k, v in text.items() if k not in ("model_type", "architectures", "transformers_version")}
    if version == "2":
        config_class, model_class = Qwen2VLConfig, Qwen2VLForConditionalGeneration
        vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, patch_size=4, mlp_ratio=2)
    else:
        config_class, model_class = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        vision = dict(
            depth=2,
            hidden_size=32,
            out_hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            patch_size=4,
            window_size=16,
            fullatt_block_indexes=[1],
        )
    config = config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model_class(config).save_pretrained(out)
    tok.save_pretrained(out)
    if chat_template:
        (out / "chat_template.jinja").write_text(chat_template)
    Qwen2VLImageProcessorPil(
        size={"shortest_edge": 16 * 16, "longest_edge": 48 * 48}, patch_size=4, merge_size=2, temporal_patch_size=2
    ).save_pretrained(out)
    return out


IDEFICS3_SPECIALS = [*SPECIALS, "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"] + [
    f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)
]


def tiny_idefics3(out: Path, seed: int = 0, chat_template: str | None = None) -> Path:
    """A tiny Idefics3: tiles of 32 px (patch 8, pixel shuffle 2: 2x2 = 4 tokens per tile), images up
    to 64 px split into tiles plus a global view; `chat_template` is the processor's."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok = tokenizer(IDEFICS3_SPECIALS)
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = Idefics3Config(
        vision_config=vision,
        text_config=text_config(len(tok), tok).to_dict(),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    torch.manual_seed(seed)
    Idefics3ForConditionalGeneration(config).save_pretrained(out)
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    Idefics3Processor(
        image_processor=images, tokenizer=tok, image_seq_len=4, chat_template=chat_template
    ).save_pretrained(out)
    return out


def tiny_paligemma(out: Path, seed: int = 0) -> Path:
    """A tiny PaliGemma: a SigLIP tower on 32 px images (patch 8: 16 image tokens) and a Gemma decoder."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipVisionConfig,
    )
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = tokenizer()
    text = GemmaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    PaliGemmaForConditionalGeneration(config).save_pretrained(out)
    images = SiglipImageProcessorPil(size={"height": 32, "width": 32})
    images.image_seq_length = 16  # (32 / 8) ** 2 patches, one token each
    PaliGemmaProcessor(image_processor=images, tokenizer=tok).save_pretrained(out)
    return out


def all_families(root: Path) -> dict[str, Path]:
    """A tiny random checkpoint of every family (and variants) under `root`, by test name."""
    return {
        "causal_lm": tiny_llama(root / "llama"),
        "causal_lm-2": tiny_llama(root / "llama-2", seed=1),  # another base LLM
        "llava": tiny_llava(root / "llava"),
        "llava-chat": tiny_llava(root / "llava-chat", chat_template=LLAVA_CHAT),
        "qwen2_vl": tiny_qwen2_vl(root / "qwen2-vl"),
        "qwen2_5_vl": tiny_qwen2_vl(root / "qwen2.5-vl", version="2.5"),
        "qwen2_vl-chat": tiny_qwen2_vl(root / "qwen2-vl-chat", chat_template=QWEN_CHAT),
        "idefics3": tiny_idefics3(root / "idefics3"),
        "idefics3-chat": tiny_idefics3(root / "idefics3-chat", chat_template=IDEFICS3_CHAT),
        "paligemma": tiny_paligemma(root / "paligemma"),
    }
