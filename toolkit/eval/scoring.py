"""The model side of evaluation: encode prompt parts, rank continuations, generate answers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from toolkit.data.format import collate, image_span
from toolkit.data.images import ImageTransform
from toolkit.data.tokenizer import Tokenizer
from toolkit.interp.hooks import cache_activations, residual_stream
from toolkit.model.generation import ContinuationScore, beam_search, greedy_search, left_pad, score_continuations
from toolkit.model.kosmos import KosmosModel


class ModelAdapter:
    """loglikelihood and generate over prompts made of text and images."""

    def __init__(
        self, model: KosmosModel, tokenizer: Tokenizer, transform: ImageTransform | None, batch_size: int = 16
    ):
        self.model, self.tok, self.transform, self.batch_size = model.eval(), tokenizer, transform, batch_size
        self.device = next(model.parameters()).device

    @property
    def accepts_images(self) -> bool:
        return self.transform is not None

    @property
    def image_size(self) -> int:
        """The side of the square images the tower reads (for blank demo images)."""
        return self.transform.size

    def encode(self, parts: Sequence[str | Image.Image]) -> tuple[list[int], torch.Tensor | None]:
        """`<s>` + parts as ids (each image as its span) and the stacked pixels of the images."""
        special = self.tok.special
        ids, pixels = [special.bos], []
        for part in parts:
            if isinstance(part, Image.Image):
                if self.transform is None:
                    raise ValueError("this model has no vision tower; the task needs images")
                ids += image_span(special, self.model.num_image_tokens)
                pixels.append(self.transform(part))
            else:
                ids += self.tok.encode(part)
        return ids, (torch.stack(pixels) if pixels else None)

    def rank(self, requests: Sequence[tuple[Sequence, str]]) -> list[ContinuationScore]:
        """Log-likelihood of each continuation (a leading space is added) after its prompt."""
        contexts, conts, images = [], [], []
        for parts, continuation in requests:
            ids, pixels = self.encode(parts)
            contexts.append(ids)
            conts.append(self.tok.encode(" " + continuation))
            images.append(pixels)
        return score_continuations(self.model, contexts, conts, images, batch_size=self.batch_size)

    @torch.no_grad()
    def _pooled_states(self, prompts: Sequence[Sequence], pool) -> torch.Tensor:
        """(prompts, layers + 1, dim): `pool(stream (B, T, dim), input_ids, attention_mask)` -> (B, dim)
        of each point of the residual stream (the input embeddings, then each block's output)."""
        names = residual_stream(self.model)
        out = []
        for start in range(0, len(prompts), self.batch_size):
            encoded = [self.encode(p) for p in prompts[start : start + self.batch_size]]
            b = collate([e[0] for e in encoded], self.tok.special, images=[e[1] for e in encoded])
            ids, mask = b.input_ids.to(self.device), b.attention_mask.to(self.device)
            images = None if b.images is None else b.images.to(self.device)
            with cache_activations(self.model, names) as cache:
                self.model(ids, images, mask, compute_loss=False)
            streams = [cache[n].float() for n in names]
            out.append(torch.stack([pool(h, ids.to(h.device), mask.to(h.device)).cpu() for h in streams], dim=1))
        return torch.cat(out)

    def states(self, prompts: Sequence[Sequence]) -> torch.Tensor:
        """The residual stream at each prompt's last token, per layer: (prompts, layers + 1, dim), layer
        0 the input embeddings, then each decoder block's output."""

        def last(h, ids, mask):
            return h[torch.arange(h.shape[0], device=h.device), mask.sum(1) - 1]

        return self._pooled_states(prompts, last)

    def text_states(self, texts: Sequence[str]) -> torch.Tensor:
        """The residual stream at the last token of each plain text (after `<s>`): (texts, layers + 1, dim)."""
        return self.states([[t] for t in texts])

    def image_states(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The residual stream averaged over each image's embedding positions (the image alone after
        `<s>`): (images, layers + 1, dim)."""

        def image_mean(h, ids, mask):
            positions = (ids == self.tok.special.image_pad)[..., None].float()
            return (h * positions).sum(1) / positions.sum(1)

        return self._pooled_states([[im] for im in images], image_mean)

    def generate(
        self,
        prompts: Sequence[Sequence],
        max_new_tokens: int,
        num_beams: int = 1,
        candidates: Sequence[str] | None = None,
    ) -> list[str]:
        """Greedy (num_beams=1) or beam search; with `candidates`, only those strings can be produced."""
        allowed = self._trie_allowed(candidates) if candidates else None
        out: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            encoded = [self.encode(p) for p in prompts[start : start + self.batch_size]]
            ids, mask = left_pad([e[0] for e in encoded], self.tok.special.pad)
            chunks = [e[1] for e in encoded if e[1] is not None]
            pixels = torch.cat(chunks).to(self.device) if chunks else None
            ids, mask = ids.to(self.device), mask.to(self.device)
            if num_beams > 1:
                hyps = beam_search(self.model, ids, pixels, mask, max_new_tokens, num_beams, allowed_tokens=allowed)
                tokens = [h[0].tokens if h else [] for h in hyps]
            else:
                tokens = greedy_search(self.model, ids, pixels, mask, max_new_tokens, allowed_tokens=allowed)
            out += [self.tok.decode(t) for t in tokens]
        return out

    def _trie_allowed(self, candidates: Sequence[str]):
        eos = self.tok.special.eos
        trie: dict = {}
        for cand in candidates:
            node = trie
            for t in self.tok.encode(" " + cand) + [eos]:
                node = node.setdefault(t, {})

        def allowed(row: int, history: list[int]):
            node = trie
            for t in history:
                node = node.get(t)
                if node is None:
                    return [eos]
            return list(node) or [eos]

        return allowed
