"""Streams and their mixture: deterministic, partitioned by rank and worker, exactly resumable.

Each stream walks its files in an order permuted per epoch (seeded by the run seed and the stream's
name), records in file order. Partitions (rank x worker) are disjoint and together see everything once
per epoch: a text stream is split after packing (sequence g goes to partition g % parts, so the
union of the partitions' batches is the single-process batch), other streams are split by record
(one record makes one sequence; records are decoded only by the partition that keeps them). The data state (epoch, file position, record offset, packing carry-over,
finished-but-unbatched sequences) is plain data: save it with the checkpoint and a restored mixture
yields exactly the batches the original would have.
"""

from __future__ import annotations

import copy
import glob
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from toolkit.config import ConfigError, DataError
from toolkit.data.format import Batch, collate
from toolkit.data.images import ImageTransform
from toolkit.data.records import READERS
from toolkit.data.sequences import Sequence, SequenceBuilder, TextPacker
from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import Tokenizer


@dataclass
class StreamConfig:
    name: str  # e.g. text, pairs, interleaved, instructions (used in logs and per-stream losses)
    kind: str  # text | pairs | interleaved | instructions (the reader and sequence format)
    paths: list[str] = field(default_factory=list)  # files or glob patterns (tar shards or jsonl)
    batch_size: int = 8  # sequences per step from this stream

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"stream '{self.name}': batch_size must be >= 1, got {self.batch_size}")


def expand_paths(patterns: list[str], stream: str) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matched:
            raise FileNotFoundError(f"stream '{stream}': no file matches {pattern}")
        files += [Path(m) for m in matched]
    if not files:
        raise FileNotFoundError(f"stream '{stream}': no paths given")
    return files


class RecordCursor:
    """Iterates one partition of a stream's records, epoch after epoch, with a resumable position."""

    def __init__(self, files: list[Path], kind: str, seed: int, part: int, parts: int, skips: SkipLog, name: str):
        if kind not in READERS:
            raise ConfigError(f"stream '{name}': unknown kind '{kind}'; valid: {', '.join(READERS)}")
        self.files, self.reader, self.seed = files, READERS[kind], seed
        self.part, self.parts, self.skips, self.name = part, parts, skips, name
        self.epoch, self.file, self.offset, self.record = 0, 0, 0, 0
        self._it: Iterator | None = None

    def order(self, epoch: int) -> list[int]:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.files)).tolist()

    def _records(self):
        while True:
            yielded = False
            order = self.order(self.epoch)
            while self.file < len(order):
                path = self.files[order[self.file]]
                for rec in islice(self.reader(path, self.skips), self.offset, None):
                    self.offset += 1
                    self.record += 1
                    if (self.record - 1) % self.parts == self.part:
                        yielded = True
                        yield rec
                self.file, self.offset = self.file + 1, 0
            if not yielded and self.record < self.parts:
                raise DataError(
                    f"stream '{self.name}' has no records for partition {self.part} of {self.parts} "
                    f"(files: {', '.join(str(f) for f in self.files[:3])})"
                )
            self.epoch, self.file, self.offset, self.record = self.epoch + 1, 0, 0, 0

    def __next__(self):
        if self._it is None:
            self._it = self._records()
        return next(self._it)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "file": self.file, "offset": self.offset, "record": self.record}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.file, self.offset, self.record = (state[k] for k in ("epoch", "file", "offset", "record"))
        self._it = None


def stream_seed(seed: int, name: str) -> int:
    """A stream's order depends on the run seed and its name only (not on which other streams exist)."""
    return seed * 1_000_003 + zlib.crc32(name.encode())


class Stream:
    """One stream: records -> sequences, buffered so a step can take exactly `batch_size` of them."""

    def __init__(
        self,
        cfg: StreamConfig,
        builder: SequenceBuilder,
        tokenizer: Tokenizer,
        max_len: int,
        seed: int,
        part: int,
        parts: int,
    ):
        self.cfg = cfg
        text = cfg.kind == "text"
        files = expand_paths(cfg.paths, cfg.name)
        self.skips = SkipLog()  # this stream's skipped records, by reason
        # Text is partitioned after packing; the cursor then reads every record.
        self.cursor = RecordCursor(
            files,
            cfg.kind,
            stream_seed(seed, cfg.name),
            0 if text else part,
            1 if text else parts,
            self.skips,
            cfg.name,
        )
        self.part, self.parts = (part, parts) if text else (0, 1)
        self.builder = copy.copy(builder)  # the shared builder, counting into this stream's skips
        self.builder.skips = self.skips
        self.packer = TextPacker(tokenizer, max_len) if text else None
        self.packed = 0  # text sequences packed so far (all partitions)
        self.pending: list[Sequence] = []  # finished sequences not yet batched (text only)

    def _produce(self) -> list[Sequence]:
        rec = next(self.cursor)
        kind = self.cfg.kind
        if kind == "text":
            mine = []
            for seq in self.packer.add(rec):
                if self.packed % self.parts == self.part:
                    mine.append(seq)
                self.packed += 1
            return mine
        seq = {
            "pairs": self.builder.caption,
            "interleaved": self.builder.document,
            "instructions": self.builder.instruction,
        }[kind](rec)
        return [] if seq is None else [seq]

    def take(self, n: int) -> list[Sequence]:
        dry_since = None  # the epoch since which every record read was skipped
        while len(self.pending) < n:
            made = self._produce()
            self.pending += made
            if made:
                dry_since = None
            elif dry_since is None:
                dry_since = self.cursor.epoch
            elif self.cursor.epoch > dry_since + 1:  # a whole pass over the files and not one sequence
                reasons = ", ".join(f"{n} x {r}" for r, n in sorted(self.skips.counts.items())) or "none counted"
                raise DataError(
                    f"stream '{self.cfg.name}': a whole pass over its files gave no sequence (skipped: {reasons})"
                )
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def state_dict(self) -> dict:
        state = {"cursor": self.cursor.state_dict()}
        if self.packer is not None:
            state["packer"] = self.packer.state_dict()
            state["packed"] = self.packed
            state["pending"] = [s.ids for s in self.pending]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.cursor.load_state_dict(state["cursor"])
        if self.packer is not None:
            self.packer.load_state_dict(state["packer"])
            self.packed = state["packed"]
            self.pending = [Sequence(list(ids)) for ids in state["pending"]]


class Mixture:
    """Several streams, each with its own batch size; `next_batch()` returns {stream name: Batch} in
    name order. Nothing a mixture serves depends on the order in which its streams are listed."""

    def __init__(
        self,
        streams: list[StreamConfig],
        tokenizer: Tokenizer,
        num_image_tokens: int,
        max_len: int,
        transform: ImageTransform | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        max_images: int = 5,
        prompt_template: str = "{instruction}\n{input}",
    ) -> None:
        if not streams:
            raise ConfigError("data.streams: a mixture needs at least one stream")
        names = [s.name for s in streams]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.streams: stream names must be unique, got {names}")
        self.tokenizer = tokenizer
        builder = SequenceBuilder(tokenizer, num_image_tokens, max_len, transform, max_images, prompt_template)
        part, parts = rank * num_workers + worker, world_size * num_workers
        self.streams = {
            s.name: Stream(s, builder, tokenizer, max_len, seed, part, parts)
            for s in sorted(streams, key=lambda s: s.name)  # batches in name order: nothing depends on the list's
        }
        self.steps = 0

    def next_batch(self) -> dict[str, Batch]:
        batches = {}
        for name, stream in self.streams.items():
            seqs = stream.take(stream.cfg.batch_size)
            masks = None
            if any(s.loss_mask is not None for s in seqs):
                masks = [s.loss_mask if s.loss_mask is not None else [True] * len(s.ids) for s in seqs]
            images = [torch.stack(s.images) if s.images else None for s in seqs]
            batches[name] = collate([s.ids for s in seqs], self.tokenizer.special, images=images, loss_masks=masks)
        self.steps += 1
        return batches

    def skipped(self) -> dict[str, dict[str, dict]]:
        """Records skipped so far (this process's share), per stream and reason: {count, first}."""
        return {n: s.skips.summary() for n, s in self.streams.items() if s.skips.total}

    def state_dict(self) -> dict:
        streams = {n: s.state_dict() for n, s in self.streams.items()}
        return {"order": ORDER_VERSION, "steps": self.steps, "streams": streams}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.streams) - set(state["streams"])
        if missing:
            raise ValueError(f"data state has no entry for streams {sorted(missing)}")
        self.continue_streams(state)
        self.steps = state["steps"]

    def continue_streams(self, state: dict) -> None:
        """Streams named in a saved data state continue where they were (whatever their position in
        either stream list); the others start at their beginning."""
        check_order_version(state)
        for name, stream_state in state["streams"].items():
            if name in self.streams:
                self.streams[name].load_state_dict(stream_state)


# Version of the rule that orders a stream's records. 1: the seed of the stream's list position
# (order changed with the stream list); 2: the run seed and the stream's name only.
ORDER_VERSION = 2


def check_order_version(state: dict) -> None:
    found = state.get("order", 1)
    if found != ORDER_VERSION:
        raise ValueError(
            f"the saved data state orders streams by rule version {found}, this xmt by version {ORDER_VERSION} "
            "(a stream's order now depends on the run seed and its name only); resuming would read other "
            "batches than the run's first part: start the run again"
        )
