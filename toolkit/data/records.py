"""Readers of the real data formats, yielding records (the world writes the same formats).

- text: jsonl lines `{"text": ...}`
- instructions: jsonl lines `{"instruction": ..., "input": ..., "output": ...}`
- pairs (LAION/COYO-style webdataset): per sample an image (`jpg`/`jpeg`/`png`/`webp`) and a caption
  (`txt`, or `json` with a `caption` field)
- interleaved (MMC4/OpenFlamingo-style webdataset): per sample a `json` with `text_list` and
  `image_info` entries `{"matched_text_index": i, "image_name": ...}`; the image bytes are either in
  the entry (`image_base64`) or a member of the same sample named `{key}.{image_name}`. An image is
  placed before the sentence it is matched to.

Records keep image bytes undecoded; decoding happens when a sequence is built, so skipping records
(for resume or for other ranks) costs no decoding.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from toolkit.data.shards import SkipLog, iter_tar

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass
class TextRecord:
    text: str


@dataclass
class InstructionRecord:
    instruction: str
    input: str
    output: str


@dataclass
class PairRecord:
    image: bytes
    caption: str
    where: str  # shard and key, for error reports


@dataclass
class DocRecord:
    parts: list  # str (text) or bytes (an encoded image), in reading order
    where: str


def read_jsonl_objects(path: Path, skips: SkipLog, what: str = "jsonl file") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each JSON-object line; malformed lines are skipped and counted."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                skips.skip("malformed json line", f"{path}:{line_no}")
                continue
            if not isinstance(obj, dict):
                skips.skip("json line is not an object", f"{path}:{line_no}")
                continue
            yield line_no, obj


def read_text(path: str | os.PathLike, skips: SkipLog) -> Iterator[TextRecord]:
    for line_no, obj in read_jsonl_objects(Path(path), skips):
        if not isinstance(obj.get("text"), str):
            skips.skip("text record without a 'text' string", f"{path}:{line_no}")
            continue
        yield TextRecord(obj["text"])


def read_instructions(path: str | os.PathLike, skips: SkipLog) -> Iterator[InstructionRecord]:
    for line_no, obj in read_jsonl_objects(Path(path), skips):
        if not all(isinstance(obj.get(k, ""), str) for k in ("instruction", "input", "output")) or "output" not in obj:
            skips.skip("instruction record without string instruction/input/output", f"{path}:{line_no}")
            continue
        yield InstructionRecord(obj.get("instruction", ""), obj.get("input", ""), obj["output"])


def read_pairs(path: str | os.PathLike, skips: SkipLog) -> Iterator[PairRecord]:
    for key, fields in iter_tar(path, skips):
        where = f"{path}:{key}"
        image = next((fields[e] for e in IMAGE_EXTS if e in fields), None)
        caption = fields["txt"].decode("utf-8", "replace") if "txt" in fields else None
        if caption is None and "json" in fields:
            try:
                caption = json.loads(fields["json"]).get("caption")
            except (json.JSONDecodeError, AttributeError):
                caption = None
        if image is None or not isinstance(caption, str):
            skips.skip("pair sample without an image or a caption", where)
            continue
        yield PairRecord(image, caption.strip(), where)


def read_interleaved(path: str | os.PathLike, skips: SkipLog) -> Iterator[DocRecord]:
    for key, fields in iter_tar(path, skips):
        where = f"{path}:{key}"
        try:
            doc = json.loads(fields["json"])
            texts = list(doc["text_list"])
            images_at: dict[int, list[bytes]] = {}
            for info in doc.get("image_info", []):
                if "image_base64" in info:
                    data = base64.b64decode(info["image_base64"])
                else:
                    data = fields[info["image_name"]]
                images_at.setdefault(int(info["matched_text_index"]), []).append(data)
        except (KeyError, ValueError, TypeError) as err:
            skips.skip("malformed interleaved document", f"{where}: {err!r}")
            continue
        parts: list = []
        for i, text in enumerate(texts):
            parts += images_at.get(i, [])
            parts.append(str(text))
        yield DocRecord(parts, where)


READERS = {"text": read_text, "instructions": read_instructions, "pairs": read_pairs, "interleaved": read_interleaved}
