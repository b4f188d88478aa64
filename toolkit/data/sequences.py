"""Records -> token sequences in the model's interleaved format.

- text: full-sentence packing (RoBERTa "FULL-SENTENCES", the paper's choice): whole sentences are
  packed contiguously, across documents, up to `max_len`; a document ends with `</s>`; every sequence
  starts with `<s>`; a sentence longer than a sequence is split.
- pairs: `<s> <image> … </image> caption </s>`; a caption that holds the `<image>` marker puts its
  image there instead (`<s> A lemon : <image> … </image> It is a fruit . </s>`).
- interleaved: text and images in reading order, at most `max_images` images (later ones dropped,
  their text kept); truncation stops before an image span that does not fit, never inside it.
- instructions: prompt tokens are masked from the loss; the output and `</s>` are targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from toolkit.config import ConfigError
from toolkit.data.format import IMAGE, image_span
from toolkit.data.images import ImageTransform, decode_image
from toolkit.data.records import DocRecord, InstructionRecord, PairRecord, TextRecord
from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import Tokenizer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Sequence:
    ids: list[int]
    images: list[torch.Tensor] = field(default_factory=list)  # (3, H, W) each, in span order
    loss_mask: list[bool] | None = None  # None = every text target counts


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


class SequenceBuilder:
    def __init__(
        self,
        tokenizer: Tokenizer,
        num_image_tokens: int,
        max_len: int,
        transform: ImageTransform | None = None,
        max_images: int = 5,
        prompt_template: str = "{instruction}\n{input}",
        skips: SkipLog | None = None,
    ) -> None:
        self.tok = tokenizer
        self.special = tokenizer.special
        self.n = num_image_tokens
        self.max_len = max_len
        self.transform = transform
        self.max_images = max_images
        self.prompt_template = prompt_template
        self.skips = skips if skips is not None else SkipLog()
        if transform is not None and max_len < num_image_tokens + 4:
            raise ConfigError(
                f"data.max_len={max_len} cannot hold one image span of {num_image_tokens} tokens plus text; "
                f"valid: {num_image_tokens + 4} or more"
            )

    def _pixels(self, data: bytes, where: str) -> torch.Tensor | None:
        try:
            return self.transform(decode_image(data))
        except Exception as err:  # PIL raises several types for damaged files
            self.skips.skip("corrupt image", f"{where}: {type(err).__name__}")
            return None

    def caption(self, rec: PairRecord) -> Sequence | None:
        pixels = self._pixels(rec.image, rec.where)
        if pixels is None:
            return None
        span = image_span(self.special, self.n)
        room = self.max_len - 2 - len(span)
        before, marker, after = rec.caption.partition(IMAGE)
        if not marker:
            ids = [self.special.bos] + span + self.tok.encode(rec.caption)[:room] + [self.special.eos]
            return Sequence(ids, [pixels])
        first = self.tok.encode(before.strip())[:room] if before.strip() else []
        rest = self.tok.encode(after.strip())[: room - len(first)] if after.strip() else []
        return Sequence([self.special.bos] + first + span + rest + [self.special.eos], [pixels])

    def document(self, rec: DocRecord) -> Sequence | None:
        ids, images = [self.special.bos], []
        budget = self.max_len - 1  # keep room for </s>
        for part in rec.parts:
            if isinstance(part, bytes):
                if len(images) >= self.max_images:
                    continue
                span = image_span(self.special, self.n)
                if len(ids) + len(span) > budget:
                    break
                pixels = self._pixels(part, rec.where)
                if pixels is None:
                    continue
                ids += span
                images.append(pixels)
            else:
                text = self.tok.encode(part)
                ids += text[: budget - len(ids)]
                if len(ids) >= budget:
                    break
        return Sequence(ids + [self.special.eos], images)

    def instruction(self, rec: InstructionRecord) -> Sequence:
        prompt = self.prompt_template.format(instruction=rec.instruction, input=rec.input).strip()
        p = [self.special.bos] + self.tok.encode(prompt)
        a = self.tok.encode(rec.output) + [self.special.eos]
        p = p[: max(1, self.max_len - len(a))]
        ids = (p + a)[: self.max_len]
        return Sequence(ids, [], [False] * len(p) + [True] * (len(ids) - len(p)))


class TextPacker:
    """Full-sentence packing with carry-over between documents; its state is plain lists of ints."""

    def __init__(self, tokenizer: Tokenizer, max_len: int) -> None:
        self.tok, self.special, self.max_len = tokenizer, tokenizer.special, max_len
        self.current: list[int] = []  # the sequence being filled (without its final </s>)

    def add(self, rec: TextRecord) -> list[Sequence]:
        """Pack one document; returns the sequences it completed."""
        done: list[Sequence] = []
        sentences = split_sentences(rec.text)
        units = [self.tok.encode(s) for s in sentences]
        if units:
            units[-1] = units[-1] + [self.special.eos]  # end of document
        for unit in units:
            while unit:
                if not self.current:
                    self.current = [self.special.bos]
                room = self.max_len - 1 - len(self.current)  # keep one slot for a closing </s>
                if len(unit) <= room:
                    self.current += unit
                    unit = []
                elif len(self.current) > 1:
                    done.append(self._close())
                else:  # a sentence longer than a whole sequence is split
                    self.current += unit[:room]
                    unit = unit[room:]
                    done.append(self._close())
        return done

    def _close(self) -> Sequence:
        ids = self.current
        if ids[-1] != self.special.eos:
            ids = ids + [self.special.eos]
        self.current = []
        return Sequence(ids)

    def state_dict(self) -> dict:
        return {"current": list(self.current)}

    def load_state_dict(self, state: dict) -> None:
        self.current = list(state["current"])
