"""Writing files so that nothing is ever half-written: to a temporary name beside the target, then
renamed over it (a rename within one directory is atomic on POSIX file systems)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path for a writer that takes a file name (np.savez, savefig, to_csv, ...); it
    replaces `path` when the block ends without an error and is removed when it fails. `suffix`
    keeps the extension for writers that read it (`x.tmp.png`)."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.tmp{suffix}" if suffix else path.name + ".tmp")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def is_partial(path: str | os.PathLike) -> bool:
    """A temporary file `atomic_path` left behind when its process was killed mid-write (`x.tmp`, `x.tmp.png`)."""
    name = Path(path).name
    return Path(path).is_file() and (name.endswith(".tmp") or ".tmp." in name)


def read_json(path: str | os.PathLike):
    """A JSON file xmt wrote (or a user gave); unreadable JSON is a DataError naming the file."""
    import json

    from toolkit.config import DataError

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write text (UTF-8) or bytes to `path` through a temporary file."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return Path(path)
