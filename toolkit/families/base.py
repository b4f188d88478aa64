"""What every Hugging Face family gives xmt's evaluation: rank, generate and states over prompts made
of text and images, in the family's own image format (and chat template where it has one).

A family subclass says how a prompt becomes the model's inputs (`context`: text with the family's
image placeholders plus the processor's tensors) and how several prompts are batched (`collate`).
The rest is shared: continuations are tokenised as the tail of the whole text (so a word keeps the
tokenisation it has after its prompt), scored in right-padded batches, generated greedily by the
model's own `generate` (left-padded), and read as hidden states at the last prompt token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from toolkit.config import ConfigError
from toolkit.files import read_json
from toolkit.model.generation import ContinuationScore
from toolkit.registry import Registry

Part = str | Image.Image

FAMILIES: Registry[type[HFAdapter]] = Registry("model family")
MODEL_TYPES: dict[str, str] = {}  # config.json model_type -> family name


def register_family(name: str, model_types: Sequence[str]):
    """Class decorator: the family `name` reads checkpoints whose config.json has one of `model_types`."""

    def add(cls):
        FAMILIES.add(name, cls)
        for model_type in model_types:
            MODEL_TYPES[model_type] = name
        cls.family = name
        return cls

    return add


def is_hf_dir(path: str | os.PathLike) -> bool:
    """A Hugging Face checkpoint directory (config.json), not an xmt run or checkpoint."""
    path = Path(path)
    return (path / "config.json").is_file() and not (path / "config.yaml").is_file()


def detect_family(path: str | os.PathLike) -> str:
    """The family that reads the checkpoint at `path`, from its config.json's model_type."""
    config = read_json(Path(path) / "config.json")
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(
            f"{Path(path) / 'config.json'}: model_type '{model_type}' is not a supported family; "
            f"supported: {', '.join(sorted(MODEL_TYPES))}"
        )
    return MODEL_TYPES[model_type]


@dataclasses.dataclass
class Context:
    """A prompt as the model reads it: its text (image placeholders not yet expanded), the input ids
    with the images expanded, the processor's other tensors (pixels, grids; first dimension over
    images or patches), and inputs with one value per token (padded with 0 like the ids; a
    continuation's tokens take `after`'s value, 0 unless given: text for Qwen2-VL's token types,
    the causal suffix, 1, for PaliGemma's)."""

    text: str
    input_ids: list[int]
    tensors: dict[str, torch.Tensor]
    per_token: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    after: dict[str, int] = dataclasses.field(default_factory=dict)  # per_token's value on a continuation (else 0)


@dataclasses.dataclass(frozen=True)
class ImageSpan:
    """One view of an image in a prompt: the tokens at `positions` cover a rows x cols patch grid, row
    by row. Most families give one view per image, its tokens in one run; Idefics3 gives a split
    image's tiles as one grid (their tokens interleaved with tile markers) and its global view as
    another (`view`)."""

    positions: tuple[int, ...]
    rows: int
    cols: int
    image: int = 0  # which image of the prompt
    view: str = "image"  # image | tiles | global

    @classmethod
    def run(cls, start: int, rows: int, cols: int, image: int = 0, view: str = "image") -> ImageSpan:
        """A view whose tokens are one run starting at `start`."""
        return cls(tuple(range(start, start + rows * cols)), rows, cols, image, view)

    @property
    def start(self) -> int:
        return self.positions[0]

    def grid(self, values: torch.Tensor) -> torch.Tensor:
        """`values` over the prompt's tokens (last dimension T) -> (..., rows, cols) over this view's patches."""
        index = torch.as_tensor(self.positions, device=values.device)
        return values.index_select(-1, index).reshape(*values.shape[:-1], self.rows, self.cols)


class HFAdapter:
    """rank / generate / states for one Hugging Face model (see the module docstring)."""

    family = ""
    accepts_images = False

    def __init__(self, path: str | os.PathLike, device: str = "cpu", batch_size: int = 16, attention: str = "sdpa"):
        self.path, self.device, self.batch_size = Path(path), torch.device(device), batch_size
        self.model, self.tok, self.processor = self.load(self.path, attention)
        self.model.to(self.device).eval()
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else (self.tok.eos_token_id or 0)
        self.chat = getattr(self.processor or self.tok, "chat_template", None) is not None

    # -- what a family provides ------------------------------------------------------------------
    def load(self, path: Path, attention: str):
        """(model, tokenizer, processor or None), read from `path` only."""
        raise NotImplementedError

    def prompt_text(self, parts: Sequence[Part]) -> str:
        """The prompt as text, each image as the family's placeholder, in the chat template if any."""
        raise NotImplementedError

    @staticmethod
    def chat_messages(parts: Sequence[Part]) -> list[dict]:
        """The prompt as one user turn for a chat template (each image as an image entry, in place)."""
        content = [{"type": "image"} if isinstance(p, Image.Image) else {"type": "text", "text": p} for p in parts]
        return [{"role": "user", "content": content}]

    @staticmethod
    def with_processor(path: Path, model_class, attention: str):
        """(model, tokenizer, processor) of a family whose composite processor loads from `path`."""
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        model = model_class.from_pretrained(path, local_files_only=True, attn_implementation=attention, dtype="auto")
        return model, processor.tokenizer, processor

    def context(self, parts: Sequence[Part]) -> Context:
        raise NotImplementedError

    @property
    def image_size(self) -> int:
        """The side of a square image this family's processor is happy with (for blank demo images)."""
        return 224

    def text_config(self):
        config = self.model.config
        return getattr(config, "text_config", None) or config

    # -- shared ------------------------------------------------------------------------------------
    def _images(self, parts: Sequence[Part]) -> list[Image.Image]:
        images = [p for p in parts if isinstance(p, Image.Image)]
        if images and not self.accepts_images:
            raise ConfigError(f"{self.path}: a {self.family} model reads text only; this task's prompts have images")
        return images

    def continuation(self, text: str, continuation: str) -> list[int]:
        """The ids of `continuation` (after a space) as they are tokenised after `text`."""
        head = self.tok(text, add_special_tokens=False)["input_ids"]
        whole = self.tok(text + " " + continuation, add_special_tokens=False)["input_ids"]
        if whole[: len(head)] == head and len(whole) > len(head):
            return whole[len(head) :]
        return self.tok(" " + continuation, add_special_tokens=False)["input_ids"]

    def collate(self, contexts: Sequence[Context], rows: Sequence[list[int]], left: bool = False) -> dict:
        """One batch: `rows` (each context's ids, maybe with a continuation) padded, the contexts'
        tensors concatenated along their first dimension in row order."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if left else slice(0, len(row))
            ids[i, span] = torch.as_tensor(row)
            mask[i, span] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        for key in dict.fromkeys(k for c in contexts for k in c.per_token):
            values = torch.zeros((len(rows), width), dtype=torch.long)
            for i, (c, row) in enumerate(zip(contexts, rows)):
                own = c.per_token.get(key, [])
                row_values = torch.full((len(row),), c.after.get(key, 0), dtype=torch.long)
                row_values[: len(own)] = torch.as_tensor(own, dtype=torch.long)
                values[i, slice(width - len(row), width) if left else slice(0, len(row))] = row_values
            batch[key] = values
        for key in dict.fromkeys(k for c in contexts for k in c.tensors):  # rows without images add none
            batch[key] = torch.cat([c.tensors[key] for c in contexts if key in c.tensors])
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.inference_mode()
    def rank(self, requests: Sequence[tuple[Sequence[Part], str]]) -> list[ContinuationScore]:
        """Log-likelihood of each continuation (after a space) following its prompt."""
        out: list[ContinuationScore] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            contexts = [self.context(parts) for parts, _ in chunk]
            conts = [self.continuation(c.text, cont) for c, (_, cont) in zip(contexts, chunk)]
            batch = self.collate(contexts, [c.input_ids + t for c, t in zip(contexts, conts)])
            logprobs = torch.log_softmax(self.model(**batch).logits.float(), dim=-1)
            for j, (c, cont) in enumerate(zip(contexts, conts)):
                c0, n = len(c.input_ids), len(cont)
                target = torch.as_tensor(cont, device=self.device)
                pred = logprobs[j, c0 - 1 : c0 - 1 + n]
                lp = pred.gather(-1, target[:, None]).sum()
                out.append(ContinuationScore(float(lp), n, bool((pred.argmax(-1) == target).all())))
        return out

    @torch.inference_mode()
    def _pooled_states(self, prompts: Sequence[Sequence[Part]], pool) -> torch.Tensor:
        """(prompts, layers + 1, dim): `pool(hidden (B, T, dim), batch)` -> (B, dim) of each layer's
        hidden states (the input embeddings first), over right-padded batches."""
        out = []
        for start in range(0, len(prompts), self.batch_size):
            contexts = [self.context(p) for p in prompts[start : start + self.batch_size]]
            batch = self.collate(contexts, [c.input_ids for c in contexts])
            hidden = self.model(**batch, output_hidden_states=True).hidden_states
            out.append(torch.stack([pool(h.float(), batch).cpu() for h in hidden], dim=1))
        return torch.cat(out)

    def states(self, prompts: Sequence[Sequence[Part]]) -> torch.Tensor:
        """The residual stream at each prompt's last token: (prompts, layers + 1, dim), the input
        embeddings first."""

        def last(h, batch):
            return h[torch.arange(h.shape[0], device=h.device), batch["attention_mask"].sum(1) - 1]

        return self._pooled_states(prompts, last)

    @contextlib.contextmanager
    def plain(self):
        """Inside the block, prompts are plain text (no chat template): probes read a phrase's own states."""
        chat, self.chat = self.chat, False
        try:
            yield self
        finally:
            self.chat = chat

    def text_states(self, texts: Sequence[str]) -> torch.Tensor:
        """The residual stream at the last token of each plain text: (texts, layers + 1, dim)."""
        with self.plain():
            return self.states([[t] for t in texts])

    def image_states(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The residual stream averaged over each image's tokens (the image alone, as a plain prompt):
        (images, layers + 1, dim)."""

        def image_mean(h, batch):
            mask = (batch["input_ids"] == self.image_token_id)[..., None].float()
            return (h * mask).sum(1) / mask.sum(1)

        with self.plain():
            return self._pooled_states([[im] for im in images], image_mean)

    @torch.inference_mode()
    def run_with_cache(self, parts: Sequence[Part], names: Sequence[str]) -> tuple[Context, dict[str, torch.Tensor]]:
        """One prompt's forward with the named hook points (toolkit.families.hooks) cached."""
        from toolkit.families.hooks import cache_activations

        context = self.context(parts)
        batch = self.collate([context], [context.input_ids])
        with cache_activations(self.model, names) as store:
            self.model(**batch)
        return context, store

    def image_spans(self, context: Context) -> list[ImageSpan]:
        """Where each image's tokens are in `context.input_ids` and the patch grid they cover (one
        span per view of each image, in prompt order)."""
        token = self.image_token_id
        spans, i, ids = [], 0, context.input_ids
        while i < len(ids):
            if ids[i] == token:
                j = i
                while j < len(ids) and ids[j] == token:
                    j += 1
                rows, cols = self.grid(context, len(spans), j - i)
                if rows * cols != j - i:
                    raise ValueError(f"image {len(spans)}: {j - i} tokens do not fill a {rows}x{cols} grid")
                spans.append(ImageSpan.run(i, rows, cols, image=len(spans)))
                i = j
            else:
                i += 1
        return spans

    @property
    def image_token_id(self) -> int | None:
        config = self.model.config
        return getattr(config, "image_token_id", None) or getattr(config, "image_token_index", None)

    def grid(self, context: Context, index: int, tokens: int) -> tuple[int, int]:
        """(rows, cols) of the patch grid that image `index`'s `tokens` tokens cover (square by default)."""
        side = round(tokens**0.5)
        return side, side

    def patch_embedding(self) -> torch.nn.Module:
        """The vision tower's patch embedding (what attribution over image patches attributes to)."""
        raise ConfigError(f"{self.path}: a {self.family} model has no vision tower")

    def patch_grids(self, context: Context, values: torch.Tensor) -> list[torch.Tensor]:
        """The patch embedding's per-patch values (its output, summed over channels) -> per image (rows, cols)."""
        raise NotImplementedError

    @torch.inference_mode()
    def attention(self, parts: Sequence[Part]) -> tuple[Context, torch.Tensor]:
        """One prompt's attention weights, (layers, heads, T, T); the model must be loaded with
        attention="eager" (the fused kernels return none)."""
        context = self.context(parts)
        batch = self.collate([context], [context.input_ids])
        weights = self.model(**batch, output_attentions=True).attentions
        if not weights or weights[0] is None:
            raise ConfigError(f"{self.path}: no attention weights; load the family with attention='eager'")
        return context, torch.stack([w[0].float().cpu() for w in weights])

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[Part]],
        max_new_tokens: int,
        num_beams: int = 1,
        candidates: Sequence[str] | None = None,
    ) -> list[str]:
        """The model's own `generate`, greedy (or beam search); with `candidates`, only those strings."""
        out: list[str] = []
        eos = self.tok.eos_token_id
        for start in range(0, len(prompts), self.batch_size):
            contexts = [self.context(p) for p in prompts[start : start + self.batch_size]]
            batch = self.collate(contexts, [c.input_ids for c in contexts], left=True)
            width = batch["input_ids"].shape[1]
            allowed = self._allowed(contexts, candidates, width) if candidates else None
            tokens = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
                pad_token_id=self.pad,
                eos_token_id=eos,
                prefix_allowed_tokens_fn=allowed,
            )[:, width:]
            for row in tokens.tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                out.append(self.tok.decode(row, skip_special_tokens=True))
        return out

    def _allowed(self, contexts: Sequence[Context], candidates: Sequence[str], width: int):
        """prefix_allowed_tokens_fn: the next tokens that keep a row on one of its candidates."""
        eos = self.tok.eos_token_id
        tries = []
        for c in contexts:
            trie: dict = {}
            for cand in candidates:
                node = trie
                for t in self.continuation(c.text, cand) + [eos]:
                    node = node.setdefault(t, {})
            tries.append(trie)

        def allowed(row: int, ids: torch.Tensor) -> list[int]:
            node = tries[row]
            for t in ids[width:].tolist():
                node = node.get(t)
                if node is None:
                    return [eos]
            return list(node) or [eos]

        return allowed
