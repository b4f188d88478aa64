"""Tokenizer: byte-level BPE trained with Hugging Face `tokenizers`, or a local tokenizer file.

The special tokens are reserved first, so a trained tokenizer has the ids of
`toolkit.model.config.SpecialTokens`: <pad> 0, <s> 1, </s> 2, <unk> 3, <image> 4, </image> 5,
<image_pad> 6. A loaded tokenizer must contain the same token strings; their ids are read from it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from toolkit.config import ConfigError, DataError
from toolkit.files import write_atomic
from toolkit.model.config import SpecialTokens

# SpecialTokens field -> token string; the order is the order of reserved ids.
SPECIAL_STRINGS = {
    "pad": "<pad>",
    "bos": "<s>",
    "eos": "</s>",
    "unk": "<unk>",
    "image": "<image>",
    "image_end": "</image>",
    "image_pad": "<image_pad>",
}


class Tokenizer:
    """Text <-> ids (no special tokens added by encode); `special` holds the special ids."""

    def __init__(self, hf: HFTokenizer, source: str = "", special_strings: dict[str, str] | None = None) -> None:
        self.hf = hf
        self.source = source
        unknown = sorted(set(special_strings or {}) - set(SPECIAL_STRINGS))
        if unknown:
            raise ConfigError(
                f"data.special_tokens: override {', '.join(unknown)}: valid: {', '.join(SPECIAL_STRINGS)}"
            )
        self.strings = {**SPECIAL_STRINGS, **(special_strings or {})}
        ids = {}
        missing = []
        for field, string in self.strings.items():
            token_id = hf.token_to_id(string)
            if token_id is None:
                missing.append(string)
            ids[field] = token_id
        if missing:
            raise ConfigError(
                f"tokenizer {source or ''}: missing special tokens {', '.join(missing)}".replace("  ", " ")
            )
        self.special = SpecialTokens(**ids)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special).strip()

    def token_id(self, token: str) -> int | None:
        return self.hf.token_to_id(token)

    def save(self, path: str | os.PathLike) -> Path:
        """Write tokenizer.json (via a temporary name)."""
        return write_atomic(path, self.hf.to_str(pretty=True))


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE over `texts` with the special tokens reserved at ids 0..6 (deterministic)."""
    hf = HFTokenizer(models.BPE(unk_token=SPECIAL_STRINGS["unk"]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_STRINGS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    return Tokenizer(hf, source="trained")


def load_tokenizer(
    path: str | os.PathLike, add_missing_special: bool = False, special_strings: dict[str, str] | None = None
) -> Tokenizer:
    """From a tokenizer.json file, or a directory holding one (a world build or a local HF model dir).

    A tokenizer from elsewhere may lack some of xmt's special tokens; with `add_missing_special`
    they are appended after its vocabulary (the model's `tokens` config must then use those ids), or
    `special_strings` names tokens of its own to play those roles (e.g. image_pad: an unused token).
    """
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no tokenizer.json (expected a file written by the tokenizers library)")
    try:
        hf = HFTokenizer.from_file(str(file))
    except Exception as err:  # tokenizers raises a bare Exception for a file it cannot parse
        raise DataError(f"{file}: not a readable tokenizer.json ({str(err).splitlines()[0]})") from err
    strings = {**SPECIAL_STRINGS, **(special_strings or {})}
    if add_missing_special:
        missing = [s for s in strings.values() if hf.token_to_id(s) is None]
        if missing:
            hf.add_special_tokens(missing)
    return Tokenizer(hf, source=str(file), special_strings=special_strings)
