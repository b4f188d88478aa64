"""World configuration and its presets (tiny for CPUs and CI, full for longer studies)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from toolkit.config import ConfigError, from_dict, merge
from toolkit.registry import Registry
from toolkit.world.ontology import COLOURS


def _non_negative(counts: Any, prefix: str) -> None:
    for name, value in vars(counts).items():
        if value < 0:
            raise ConfigError(f"{prefix}.{name}={value}: a count, expected >= 0")


@dataclass
class LeakageConfig:
    """How much colour/size text reaches vision-only categories (0 = none: the clean arm)."""

    vision_only_text: float = 0.0  # P(a vision-only category's text document states its colour / size)
    vision_only_caption: float = 0.0  # P(a vision-only caption names its colour)
    vision_only_interleaved: float = 0.0  # P(an interleaved paragraph about a vision-only object names its colour)
    grounded_caption: float = 0.5  # P(a text-grounded caption names its colour)

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"world.leakage.{name}={value}: a probability, expected in [0, 1]")


@dataclass
class StreamCounts:
    text: int = 6000  # text documents (facts, comparisons, stories)
    pairs: int = 6000  # image-caption pairs (objects, generic shapes, two-object scenes)
    interleaved: int = 1500  # documents with several images
    instructions: int = 2000  # language-only Question/Answer instructions over text facts
    rendered: int = 1500  # rendered-text image-caption pairs (OCR)

    def __post_init__(self) -> None:
        _non_negative(self, "world.counts")


@dataclass
class EvalCounts:
    images_per_category: int = 2  # held-out renders per category for captioning / VQA / classification
    description_groups: int = 6  # pairs of novel categories for classification with descriptions
    per_description_category: int = 5
    rendered_sentiment: int = 120
    raven: int = 60
    size_pairs: int = 300  # RelativeSize-style questions (both orders)
    language_mc: int = 200
    text_qa: int = 200  # generated answers to Question/Answer prompts over text facts (instruction following)

    def __post_init__(self) -> None:
        _non_negative(self, "world.eval")


@dataclass
class WorldConfig:
    num_categories: int = 127  # nouns (balanced over colours); past the 127 real ones, invented nouns

    vision_only_fraction: float = 0.5  # share of categories per colour whose colour/size is never in text
    # real: each noun keeps its own kind and place, stated in text for every category; being real they
    # go with colour and size (leakage.json `text_priors` measures how far) | shuffled: kinds and places
    # dealt out at random over the categories, so the text holds no such cue to vision-only facts
    text_attributes: str = "real"
    image_size: int = 32  # rendered image side in pixels
    colour_jitter: int = 18  # +- per RGB channel around the canonical colour
    scene_fraction: float = 0.15  # share of pairs that show two objects (relative size)
    generic_fraction: float = 0.2  # share of pairs that show a plain coloured shape ("A red star .")
    question_caption_fraction: float = 0.3  # share of object captions written as "Question: ... Answer: ..."
    object_shape_questions: float = 0.0  # share of those questions asking the object's shape (not a text fact)
    # Transfer switches (docs/studies/transfer.md). Direction: share of object captions and interleaved
    # objects whose noun comes before the image ("A photo of a lemon: <image> ..."), not after it.
    noun_first_fraction: float = 0.0
    caption_templates: int = 0  # how many naming templates object captions use (1..5; 0 = all)
    renders_per_category: int = 0  # distinct training renders per category, reused (0 = a new one each time)
    max_images_per_doc: int = 4  # interleaved documents hold 2..this many images
    vocab_size: int = 2048  # BPE tokenizer trained on the world text
    samples_per_shard: int = 2000
    leakage: LeakageConfig = field(default_factory=LeakageConfig)
    counts: StreamCounts = field(default_factory=StreamCounts)
    eval: EvalCounts = field(default_factory=EvalCounts)

    def __post_init__(self) -> None:
        if self.text_attributes not in ("real", "shuffled"):
            raise ConfigError(f"world.text_attributes: unknown value '{self.text_attributes}'; valid: real, shuffled")
        for name in (
            "vision_only_fraction",
            "scene_fraction",
            "generic_fraction",
            "question_caption_fraction",
            "noun_first_fraction",
            "object_shape_questions",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"world.{name}={getattr(self, name)}: expected a share in [0, 1]")
        if self.scene_fraction + self.generic_fraction > 1.0:
            raise ConfigError(
                f"world.scene_fraction + world.generic_fraction = {self.scene_fraction + self.generic_fraction}: "
                "at most 1 (the rest of the pairs show one object)"
            )
        if not 0 <= self.caption_templates <= len(NAMING_TEMPLATES):
            raise ConfigError(
                f"world.caption_templates={self.caption_templates}: expected 0 (all) or 1..{len(NAMING_TEMPLATES)}"
            )
        if self.renders_per_category < 0:
            raise ConfigError(
                f"world.renders_per_category={self.renders_per_category}: expected >= 0 (0 = a new render each time)"
            )
        for name in ("image_size", "vocab_size", "samples_per_shard"):
            if getattr(self, name) < 1:
                raise ConfigError(f"world.{name}={getattr(self, name)}: expected >= 1")
        if self.max_images_per_doc < 2:
            raise ConfigError(f"world.max_images_per_doc={self.max_images_per_doc}: expected >= 2")
        if self.num_categories < len(COLOURS):
            raise ConfigError(f"world.num_categories={self.num_categories}: at least {len(COLOURS)} (one per colour)")


# How an object caption names its object (the `caption_templates` switch keeps the first n).
NAMING_TEMPLATES = (
    "{a} {noun} .",
    "a photo of {a} {noun} .",
    "this is {a} {noun} .",
    "an image of {a} {noun} .",
    "the photo of the {noun} .",
)

WORLD_PRESETS: Registry[dict[str, Any]] = Registry("world preset")
WORLD_PRESETS.add("tiny", {})
WORLD_PRESETS.add(
    "full",
    {
        "image_size": 64,
        "counts": {"text": 60000, "pairs": 60000, "interleaved": 15000, "instructions": 20000, "rendered": 15000},
        "eval": {"images_per_category": 8, "rendered_sentiment": 600, "raven": 300, "size_pairs": 972},
        "samples_per_shard": 5000,
    },
)


def world_config(preset: str, overrides: dict[str, Any] | None = None) -> WorldConfig:
    cfg = from_dict(WorldConfig, WORLD_PRESETS.get(preset), prefix="world")
    return merge(cfg, overrides, prefix="world") if overrides else cfg
