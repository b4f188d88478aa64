"""PaliGemma (`PaliGemmaForConditionalGeneration`): a SigLIP tower and a Gemma decoder read as a
prefix LM. The prompt is the images' tokens, `<bos>`, the text and a newline; the prefix (images and
text, token type 0) attends to itself both ways, the answer (token type 1) causally.

It cannot place an image after text (its images always open the prompt): such a prompt is a
one-line error. A prompt without images is `<bos>`, the text and the newline."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from toolkit.config import ConfigError
from toolkit.families.base import Context, HFAdapter, Part, register_family


@register_family("paligemma", ("paligemma",))
class PaliGemma(HFAdapter):
    accepts_images = True

    def load(self, path: Path, attention: str):
        from transformers import PaliGemmaForConditionalGeneration

        return self.with_processor(path, PaliGemmaForConditionalGeneration, attention)

    @property
    def image_size(self) -> int:
        return int(self.processor.image_processor.size["height"])

    def _split(self, parts: Sequence[Part]) -> tuple[list[Image.Image], str]:
        images = self._images(parts)
        first_text = next((i for i, p in enumerate(parts) if not isinstance(p, Image.Image)), len(parts))
        if any(isinstance(p, Image.Image) for p in parts[first_text:]):
            raise ConfigError(
                f"{self.path}: a paligemma model reads its images before the prompt's text; this prompt has an "
                "image after text (interleaved or few-shot image prompts)"
            )
        return images, "".join(p for p in parts if not isinstance(p, Image.Image))

    def prompt_text(self, parts: Sequence[Part]) -> str:
        images, text = self._split(parts)
        return self.processor.image_token * len(images) + self.tok.bos_token + text + "\n"

    def context(self, parts: Sequence[Part]) -> Context:
        images, text = self._split(parts)
        if images:
            # the processor writes `<bos>` after the images and the newline after the text
            placeholders = self.processor.image_token * len(images)
            enc = self.processor(
                text=[placeholders + text], images=[images], return_tensors="pt", add_special_tokens=False
            )
            ids, tensors = enc["input_ids"][0].tolist(), {"pixel_values": enc["pixel_values"]}
        else:
            ids, tensors = self.tok(self.tok.bos_token + text + "\n", add_special_tokens=False)["input_ids"], {}
        # the whole prompt is the bidirectional prefix (0); a continuation is the causal suffix (1)
        return Context(
            self.prompt_text(parts), list(ids), tensors, {"token_type_ids": [0] * len(ids)}, {"token_type_ids": 1}
        )

    def continuation(self, text: str, continuation: str) -> list[int]:
        """The answer after the prompt's newline, as PaliGemma's suffix is written (no leading space)."""
        head = self.tok(text, add_special_tokens=False)["input_ids"]
        whole = self.tok(text + continuation, add_special_tokens=False)["input_ids"]
        if whole[: len(head)] == head and len(whole) > len(head):
            return whole[len(head) :]
        return self.tok(continuation, add_special_tokens=False)["input_ids"]

    def grid(self, context: Context, index: int, tokens: int) -> tuple[int, int]:
        side = self.model.config.vision_config.image_size // self.model.config.vision_config.patch_size
        return side, tokens // side

    def patch_embedding(self):
        return self.model.model.vision_tower.embeddings.patch_embedding

    def patch_grids(self, context: Context, values):
        return list(values.sum(1))  # the convolution's output (images, channels, rows, cols)
