"""Probing study: which layers of a checkpoint hold a category's colour, size and shape, in text-token
states and in image states, and whether a probe fitted on one modality reads the other.

Text states: the last token of "the {noun}" (three phrasings per category). Image states: the mean
over a picture's image-embedding positions (the world's held-out classification images). Splits hold
categories out; the control task gives each category a random label (selectivity). `grounded->
vision_only` fits on text-grounded categories and tests on vision-only ones: can the text
representation of a noun whose colour was never stated in text tell its colour?
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.common import load_run_for_analysis, save_figure, size_class, world_categories, write_csv
from toolkit.interp.probes import probe, transfer_probe

TEMPLATES = ("the {}", "a {}", "this is a {}")
ATTRIBUTES = ("colour", "size", "shape")


def _label(cat: dict, attribute: str) -> str:
    return size_class(cat["size"]) if attribute == "size" else cat[attribute]


def features(run_dir: str | os.PathLike, images_per_category: int = 2, world: str | os.PathLike | None = None):
    """(categories, text rows, image rows): rows are dicts with the category and per-layer state vectors.
    Works on xmt runs and Hugging Face checkpoints alike (the adapters' text_states / image_states)."""
    loaded = load_run_for_analysis(run_dir, world)
    adapter = loaded.adapter
    cats = {c["name"]: c for c in world_categories(loaded.world)}
    texts = [(name, template.format(name)) for name in cats for template in TEMPLATES]
    states = adapter.text_states([t for _, t in texts]).numpy()
    text_rows = [{"category": name, "states": list(s)} for (name, _), s in zip(texts, states)]
    image_rows = []
    if adapter.accepts_images:
        eval_file = Path(loaded.world) / "eval" / "classification.jsonl"
        records = [json.loads(line) for line in eval_file.read_text().splitlines()]
        per_cat: dict[str, int] = {}
        names, images = [], []
        for r in records:
            if per_cat.get(r["label"], 0) >= images_per_category:
                continue
            per_cat[r["label"]] = per_cat.get(r["label"], 0) + 1
            names.append(r["label"])
            images.append(loaded_image(eval_file.parent / r["image"]))
        if images:
            states = adapter.image_states(images).numpy()
            image_rows = [{"category": name, "states": list(s)} for name, s in zip(names, states)]
    return cats, text_rows, image_rows


def loaded_image(path: Path):
    from PIL import Image

    return Image.open(path).convert("RGB")


def run_probing(
    run_dir: str | os.PathLike, out: str | os.PathLike, attributes=ATTRIBUTES, world: str | os.PathLike | None = None
) -> pd.DataFrame:
    out = Path(out)
    cats, text_rows, image_rows = features(run_dir, world=world)
    n_layers = len(text_rows[0]["states"])
    rows = []
    for attribute in attributes:
        for layer in range(n_layers):
            sets = {"text": text_rows, "image": image_rows}
            data = {}
            for modality, items in sets.items():
                if not items:
                    continue
                x = np.stack([r["states"][layer] for r in items])
                y = np.array([_label(cats[r["category"]], attribute) for r in items])
                g = np.array([r["category"] for r in items])
                data[modality] = (x, y, g)
                res = probe(x, y, g)
                rows.append(
                    {
                        "attribute": attribute,
                        "layer": layer,
                        "modality": modality,
                        "setting": "held-out categories",
                        "accuracy": res.accuracy,
                        "control": res.control_accuracy,
                        "selectivity": res.selectivity,
                        "chance": res.chance,
                        "n": res.n,
                    }
                )
            if "text" in data and "image" in data:
                for a, b in (("text", "image"), ("image", "text")):
                    acc = transfer_probe(data[a][0], data[a][1], data[b][0], data[b][1])
                    rows.append(
                        {
                            "attribute": attribute,
                            "layer": layer,
                            "modality": f"{a}->{b}",
                            "setting": "cross-modal",
                            "accuracy": acc,
                            "n": len(data[b][1]),
                        }
                    )
            x, y, g = data["text"]
            grounded = np.array([cats[c]["grounded"] for c in g])
            if attribute in ("colour", "size") and grounded.any() and (~grounded).any():
                acc = transfer_probe(x[grounded], y[grounded], x[~grounded], y[~grounded])
                rows.append(
                    {
                        "attribute": attribute,
                        "layer": layer,
                        "modality": "text",
                        "setting": "grounded->vision_only",
                        "accuracy": acc,
                        "n": int((~grounded).sum()),
                    }
                )
    df = pd.DataFrame(rows)
    write_csv(df, out, "probing")
    plot_probing(df, out)
    return df


def plot_probing(df: pd.DataFrame, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = list(dict.fromkeys(df["attribute"]))
    fig, axes = plt.subplots(1, len(attributes), figsize=(4.2 * len(attributes), 3.4), squeeze=False)
    for ax, attribute in zip(axes[0], attributes):
        sub = df[df["attribute"] == attribute]
        for (modality, setting), line in sub.groupby(["modality", "setting"], sort=False):
            ax.plot(line["layer"], line["accuracy"], marker="o", label=f"{modality} ({setting})")
        held = sub[sub["setting"] == "held-out categories"]
        if len(held):
            ax.axhline(held["chance"].max(), color="grey", ls=":", lw=1, label="majority class")
        ax.set_title(attribute)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylabel("probe accuracy")
        ax.set_ylim(0, 1.02)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return save_figure(fig, out, "probing")
