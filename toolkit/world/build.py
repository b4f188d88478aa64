"""`xmt world build`: write the world's streams, tokenizer, eval sets and leakage report.

Layout of a world directory:
    world.json            config, seed and the ontology with each category's split
    tokenizer.json        BPE tokenizer trained on all world text (+ the paper's prompt words)
    text/*.jsonl          {"text": ...} documents
    instructions/*.jsonl  {"instruction", "input", "output"} (language-only)
    pairs/*.tar           webdataset image-caption pairs (png, txt, json)
    rendered/*.tar        rendered-text pairs, same format
    interleaved/*.tar     MMC4-style documents (json with text_list/image_info + png members)
    eval/<task>.jsonl     eval sets; eval/images/*.png their held-out images
    leakage.json          colour/size co-occurrence counts per stream
    manifest.json         sha256 of every file
The build writes into a temporary directory and renames it when complete; same seed and config give
byte-identical files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from toolkit.config import ConfigError, differences, merge, to_dict
from toolkit.data.images import encode_png
from toolkit.data.shards import ShardWriter
from toolkit.data.tokenizer import train_tokenizer
from toolkit.files import read_json
from toolkit.world.config import WorldConfig, world_config
from toolkit.world.corpora import Corpora
from toolkit.world.evalsets import TASKS, EvalSets
from toolkit.world.leakage import leakage_report
from toolkit.world.ontology import build_ontology

# The version of the generator: raised when the same settings and seed come to give other data
# (2: a question mark no longer starts a sentence, so "is? yellow" keeps the evaluation's word).
# A world records the generator that wrote it; one written by another is not reused.
GENERATOR = 2

# Prompt words of the paper's evaluation templates, so the tokenizer covers them.
PROMPT_TEXT = (
    "An image of The photo of the Question: Answer: Here are three images: Here are four images: Here are eight "
    "images: The following image is: Is it correct? Yes No Introduce this picture in detail: what is the sentiment "
    "of the opinion? positive negative The color of is? Is larger than Description of It has what is the name of in "
    "the picture?"
)


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True)


def _write_jsonl_shards(directory: Path, prefix: str, rows, per_shard: int) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    texts, shard, lines = [], 0, []

    def flush():
        nonlocal shard, lines
        if lines:
            (directory / f"{prefix}-{shard:05d}.jsonl").write_text("".join(lines), encoding="utf-8")
            shard, lines = shard + 1, []

    for row in rows:
        lines.append(_dumps(row) + "\n")
        texts.append(" ".join(str(v) for v in row.values()))
        if len(lines) >= per_shard:
            flush()
    flush()
    return texts


def _write_pairs(directory: Path, prefix: str, pairs, per_shard: int) -> list[str]:
    captions = []
    with ShardWriter(directory, prefix, per_shard) as writer:
        for i, (image, caption) in enumerate(pairs):
            writer.write(f"{i:07d}", {"png": encode_png(image), "txt": caption.encode()})
            captions.append(caption)
    return captions


def _write_interleaved(directory: Path, docs, per_shard: int) -> list[str]:
    texts = []
    with ShardWriter(directory, "interleaved", per_shard) as writer:
        for i, parts in enumerate(docs):
            text_list, info, fields = [], [], {}
            for part in parts:
                if isinstance(part, str):
                    text_list.append(part)
                else:
                    name = f"img{len(info)}.png"
                    info.append({"image_name": name, "matched_text_index": len(text_list)})
                    fields[name] = encode_png(part)
            fields = {"json": _dumps({"text_list": text_list, "image_info": info}).encode(), **fields}
            writer.write(f"{i:07d}", fields)
            texts.append(" ".join(text_list))
    return texts


def build_world(
    cfg: WorldConfig,
    out: str | Path,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build the world into `out`; returns the manifest (file -> sha256) and timing."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} exists and is not empty; pass --force to replace it")
    tmp = out.with_name(f"{out.name}.building-{os.getpid()}")  # per process: parallel builds do not collide
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    categories = build_ontology(cfg.num_categories, cfg.vision_only_fraction, seed, cfg.text_attributes == "shuffled")
    corpora = Corpora(cfg, categories, seed)
    per = cfg.samples_per_shard
    c = cfg.counts
    steps = tqdm(total=8, desc="world build", disable=not progress, unit="stage")
    streams = {}
    streams["text"] = _write_jsonl_shards(tmp / "text", "text", corpora.text(), per)
    steps.update()
    streams["instructions"] = _write_jsonl_shards(tmp / "instructions", "instructions", corpora.instructions(), per)
    steps.update()
    streams["pairs"] = _write_pairs(
        tmp / "pairs",
        "pairs",
        tqdm(corpora.pairs(), total=c.pairs, disable=not progress, leave=False, desc="pairs"),
        per,
    )
    steps.update()
    streams["rendered"] = _write_pairs(tmp / "rendered", "rendered", corpora.rendered(), per)
    steps.update()
    streams["interleaved"] = _write_interleaved(tmp / "interleaved", corpora.interleaved(), per)
    steps.update()

    evalsets = EvalSets(cfg, categories, seed)
    eval_dir = tmp / "eval"
    (eval_dir / "images").mkdir(parents=True)
    eval_text = []
    for task in TASKS:
        lines = []
        for record, images in getattr(evalsets, task)():
            for name, image in images.items():
                (eval_dir / name).write_bytes(encode_png(image))
            lines.append(_dumps(record) + "\n")
            eval_text.append(" ".join(str(v) for v in record.values() if isinstance(v, str)))
        (eval_dir / f"{task}.jsonl").write_text("".join(lines), encoding="utf-8")
    steps.update()

    tokenizer = train_tokenizer([t for s in streams.values() for t in s] + eval_text + [PROMPT_TEXT], cfg.vocab_size)
    tokenizer.save(tmp / "tokenizer.json")
    steps.update()

    report = leakage_report(categories, streams)
    (tmp / "leakage.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    world = {
        "generator": GENERATOR,
        "seed": seed,
        "config": to_dict(cfg),
        "categories": [vars(cat) for cat in categories],
        "tasks": list(TASKS),
        "vocab_size": tokenizer.vocab_size,
    }
    (tmp / "world.json").write_text(json.dumps(world, indent=2, sort_keys=True) + "\n")
    manifest = {
        str(p.relative_to(tmp)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    steps.update()
    steps.close()
    if out.exists() and not force:  # another process finished the same build first: keep its copy
        shutil.rmtree(tmp)
    else:
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    seconds = time.perf_counter() - start
    echo(
        f"world built in {seconds:.1f} s: {len(categories)} categories "
        f"({sum(not cat.grounded for cat in categories)} vision-only), {len(manifest)} files, "
        f"vision-only leaks {report['vision_only_total']} -> {out}"
    )
    priors = report["text_priors"]
    if priors["vision_only"]:
        echo(
            "text priors of vision-only facts (answering as the grounded categories of the same kind do): "
            f"colour {priors['colour']['by_kind']:.0%} (chance {priors['colour']['chance']:.0%}), "
            f"size comparisons {priors['size']['by_kind']:.0%} (chance 50%); see leakage.json"
        )
    return {"manifest": manifest, "seconds": seconds, "leakage": report}


def ensure_world(
    path: str | os.PathLike | None,
    preset: str,
    seed: int,
    overrides: dict | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Build the world at `path` unless it is there (a run config's data.world, world_preset,
    world_seed, world_overrides), and check that a world found there was built with those settings.
    Processes that ask at the same time (torchrun ranks, parallel grid cells) wait on a lock file
    beside it: one builds, the others find it built."""
    if not path:
        return
    if not Path(path, "manifest.json").is_file():
        if Path(path).is_dir() and any(p.suffix != ".lock" for p in Path(path).iterdir()):
            raise ConfigError(
                f"data.world={path} exists but holds no world (no manifest.json); point data.world to a world "
                "or to a directory that does not exist yet (it is built there)"
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(Path(path).with_name(Path(path).name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not Path(path, "manifest.json").is_file():
                echo(f"world {path} not found: building preset '{preset}' (seed {seed})")
                build_world(world_config(preset, overrides or None), path, seed=seed, progress=False)
    built = read_json(Path(path, "world.json"))
    if built.get("generator", 1) != GENERATOR:
        raise ConfigError(
            f"{path} was written by world generator {built.get('generator', 1)} and this xmt writes generator "
            f"{GENERATOR} (the same settings now give other data); rebuild it (xmt world build ... --force) "
            "or point data.world to a directory that does not exist yet"
        )
    wanted = json.loads(json.dumps(to_dict(world_config(preset, overrides or None))))
    differ = (["world_seed"] if built["seed"] != seed else []) + sorted(differences(_complete(built["config"]), wanted))
    if differ:
        raise ConfigError(
            f"{path} was built with other settings than data.world_preset='{preset}', data.world_seed={seed} "
            f"and data.world_overrides say (they differ in {', '.join(differ[:6])}); point data.world to "
            "another directory, or set those keys to the world's (its world.json)"
        )


def _complete(config: dict) -> dict:
    """A world.json config with the settings it predates at their defaults (a switch added later
    leaves the world as it was at its default value)."""
    return json.loads(json.dumps(to_dict(merge(WorldConfig(), config, prefix="world"))))


def world_identity(path: str | os.PathLike | None, preset: str, seed: int, overrides: dict | None = None) -> str | None:
    """What a run's world is, independent of where it lives: a digest of the world seed and the full
    world config, read from the built world's world.json when it exists, else from the preset and
    overrides it would be built from (the two agree for a world built from them). None: no world."""
    if not path:
        return None
    built = Path(path, "world.json")
    if built.is_file():
        world = read_json(built)
        seed, config, generator = world["seed"], _complete(world["config"]), world.get("generator", 1)
    else:
        config, generator = to_dict(world_config(preset, overrides or None)), GENERATOR
    identity = {"seed": seed, "config": config} | ({"generator": generator} if generator > 1 else {})
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
