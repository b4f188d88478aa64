"""Webdataset-style tar shards: writing (deterministic bytes) and reading (skipping damage).

A sample is the group of consecutive members sharing a key: `000123.png`, `000123.txt`,
`000123.json` form sample `000123` with fields `png`, `txt`, `json` (the key is the member name up
to the first dot of its last path component, as in webdataset).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class SkipLog:
    """Counts of skipped records by reason, with the first place each reason was seen."""

    counts: Counter = field(default_factory=Counter)
    first: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        if reason not in self.first:
            self.first[reason] = where
            log.warning("skipping %s (%s); further ones are counted", where, reason)
        self.counts[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> dict[str, dict]:
        return {reason: {"count": n, "first": self.first[reason]} for reason, n in sorted(self.counts.items())}


def split_key(name: str) -> tuple[str, str]:
    """'dir/000123.img0.png' -> ('dir/000123', 'img0.png')."""
    head, _, base = name.rpartition("/")
    key, _, ext = base.partition(".")
    return (f"{head}/{key}" if head else key), ext


def _ends_cleanly(f, offset: int, size: int) -> bool:
    """A complete tar has a zero block (end-of-archive marker) where the member headers stop."""
    if size % 512:
        return False
    f.seek(offset)
    block = f.read(512)
    return len(block) == 512 and not any(block)


def iter_tar(path: str | os.PathLike, skips: SkipLog | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Samples of one tar shard in order; a truncated or unreadable shard ends early and is counted.

    Python's tarfile stops silently when a file is cut at a header, so the end-of-archive marker is
    checked too; the last (possibly incomplete) sample of a damaged shard is dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard not found: {path}")
    skips = skips if skips is not None else SkipLog()
    key, fields = None, {}
    size = path.stat().st_size
    with path.open("rb") as f:
        try:
            tar = tarfile.open(fileobj=f, mode="r|")  # streaming: headers are read as members come
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = split_key(member.name)
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} truncated")
                if key is not None and k != key:
                    yield key, fields
                    fields = {}
                key = k
                fields[ext] = data
            complete = _ends_cleanly(f, tar.offset, size)
            error = "no end-of-archive marker"
        except (tarfile.TarError, EOFError, OSError, ValueError) as err:
            complete, error = False, str(err)
    if not complete:
        skips.skip("truncated or corrupt shard", f"{path} after key {key}: {error}")
        return
    if key is not None:
        yield key, fields


class ShardWriter:
    """Writes samples into `{prefix}-{index:05d}.tar`, `max_samples` per shard; bytes are deterministic.

    Each shard is written under a temporary name and renamed when complete.
    """

    def __init__(self, directory: str | os.PathLike, prefix: str, max_samples: int = 1000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_samples = prefix, max_samples
        self.paths: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = 0

    def _open(self) -> None:
        final = self.directory / f"{self.prefix}-{len(self.paths):05d}.tar"
        self.paths.append(final)
        self._tmp = final.with_name(final.name + ".tmp")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tmp.replace(self.paths[-1])
            self._tar = None

    def write(self, key: str, fields: dict[str, bytes]) -> None:
        if self._tar is None or self._count >= self.max_samples:
            self._close()
            self._open()
        for ext, data in fields.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1

    def close(self) -> list[Path]:
        self._close()
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
