"""Text-only causal LMs through `AutoModelForCausalLM`: the base-LLM arm of a real (VLM, LLM) pair."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toolkit.families.base import Context, HFAdapter, Part, register_family

TEXT_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3", "smollm3", "olmo2", "gpt2")


@register_family("causal_lm", TEXT_MODEL_TYPES)
class CausalLM(HFAdapter):
    def load(self, path: Path, attention: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation=attention, dtype="auto"
        )
        return model, tok, None

    def prompt_text(self, parts: Sequence[Part]) -> str:
        self._images(parts)
        text = "".join(parts)
        if self.chat:
            return self.tok.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return text

    def context(self, parts: Sequence[Part]) -> Context:
        text = self.prompt_text(parts)
        ids = self.tok(text, add_special_tokens=not self.chat)["input_ids"]  # a template writes its own <s>
        return Context(text, list(ids), {})
