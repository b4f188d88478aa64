import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SMALL_WORLD as SMALL
from conftest import tiny_model

from toolkit.cli import main
from toolkit.data.images import ImageTransform, decode_image
from toolkit.data.mixture import Mixture, StreamConfig
from toolkit.data.records import read_instructions, read_interleaved, read_pairs, read_text
from toolkit.data.shards import SkipLog
from toolkit.data.tokenizer import load_tokenizer
from toolkit.world.build import build_world
from toolkit.world.config import world_config
from toolkit.world.leakage import leakage_report, text_priors
from toolkit.world.ontology import COLOURS, Category, build_ontology
from toolkit.world.raven import candidates, make_matrix

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"


@pytest.fixture
def world(small_world):
    return small_world


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_tiny_world_builds_byte_identically_from_the_cli(tmp_path):
    runner = CliRunner()
    for name in ("a", "b"):
        result = runner.invoke(
            main, ["world", "build", "--preset", "tiny", "--out", str(tmp_path / name), "--seed", "0", "--quiet"]
        )
        assert result.exit_code == 0, result.output
        assert "world built in" in result.output
    a, b = _tree_hash(tmp_path / "a"), _tree_hash(tmp_path / "b")
    assert a == b and len(a) > 100
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert {k: v for k, v in a.items() if k != "manifest.json"} == manifest
    # A different seed gives a different world; an existing directory is not overwritten silently.
    other = runner.invoke(
        main,
        [
            "world",
            "build",
            "--out",
            str(tmp_path / "c"),
            "--seed",
            "1",
            "--quiet",
            "--set",
            "counts.pairs=50",
            "--set",
            "counts.text=50",
        ],
    )
    assert other.exit_code == 0
    assert (
        json.loads((tmp_path / "c" / "world.json").read_text())["categories"]
        != json.loads((tmp_path / "a" / "world.json").read_text())["categories"]
    )
    again = runner.invoke(main, ["world", "build", "--out", str(tmp_path / "a"), "--quiet"])
    assert again.exit_code != 0 and "pass --force" in again.output
    bad = runner.invoke(main, ["world", "build", "--out", str(tmp_path / "d"), "--set", "leakage.colour=1"])
    assert bad.exit_code != 0 and "unknown config key 'world.leakage.colour'" in bad.output


def test_ontology_is_large_balanced_and_split_per_colour():
    cats = build_ontology(127, 0.5, seed=0)
    assert len(cats) >= 100
    assert len({(c.colour, c.shape) for c in cats}) == len(cats)  # an image identifies its category
    for colour in COLOURS:
        group = [c for c in cats if c.colour == colour]
        assert any(c.grounded for c in group) and any(not c.grounded for c in group), colour
    assert build_ontology(127, 0.5, seed=1) != cats  # the split follows the world seed
    # Nouns that spell a colour word would leak it through text: they are always text-grounded.
    assert all(c.grounded for c in cats if any(col in c.name for col in COLOURS))
    assert {c.name for c in cats if any(col in c.name for col in COLOURS)} >= {"blueberry", "bluebird"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="the benchmark files are not available here")
def test_nouns_overlap_the_real_visual_commonsense_sets():
    nouns = {c.name for c in build_ontology(127, 0.5, 0)}
    with (SHARED / "memory_color" / "memory_color_data.csv").open() as f:
        memory = {row["Item"].strip() for row in csv.DictReader(f)}
    with (SHARED / "color_terms" / "color-concrete-objects.csv").open() as f:
        terms = {row["object"].strip() for row in csv.DictReader(f)}
    sizes = {
        w for line in (SHARED / "relative_size" / "sizePairsFull.txt").read_text().split("\n") for w in line.split()
    }
    assert len(nouns & memory) >= 30 and len(nouns & terms) >= 15 and len(nouns & sizes) >= 8


def test_leakage_report_counts_planted_mentions():
    cats = [
        Category("lemon", "yellow", 2, "fruit", "kitchen", "star", grounded=False),
        Category("banana", "yellow", 3, "fruit", "kitchen", "arrow", grounded=True),
    ]
    docs = {
        "text": ["the lemon is yellow .", "the lemon is a fruit .", "the banana is larger than the lemon ."],
        "pairs": ["a lemon .", "a yellow banana ."],
    }
    report = leakage_report(cats, docs)
    assert report["streams"]["text"]["vision_only_colour"] == 1 and report["streams"]["text"]["vision_only_size"] == 1
    assert report["streams"]["pairs"]["vision_only_colour"] == 0 and report["streams"]["pairs"]["grounded_colour"] == 1
    assert report["vision_only_leaks"] == {"lemon": {"text": 2}} and report["vision_only_total"] == 2


def test_text_priors_measure_what_shared_attributes_give_away():
    """A kind shared only with grounded categories of the same colour and a larger size gives the
    vision-only colour and size away; a place shared with nobody gives nothing."""
    cats = [
        Category("lemon", "yellow", 2, "fruit", "garden", grounded=False),
        Category("melon", "green", 4, "gourd", "field", grounded=False),
        Category("banana", "yellow", 3, "fruit", "kitchen", grounded=True),
        Category("quince", "yellow", 3, "fruit", "orchard", grounded=True),
        Category("pumpkin", "orange", 6, "gourd", "barn", grounded=True),
        Category("zucchini", "green", 5, "gourd", "market", grounded=True),
    ]
    priors = leakage_report(cats, {})["text_priors"]
    assert priors["vision_only"] == 2 and priors["colour"]["chance"] == round(1 / 11, 4)
    # lemon: fruit peers all yellow -> right; melon: gourd peers orange/green tie -> "green" (first in
    # COLOURS order) -> right. Sizes: fruit mean 3 < gourd mean 5.5, as lemon 2 < melon 4 -> right.
    assert priors["colour"]["by_kind"] == 1.0 and priors["size"]["by_kind"] == 1.0
    # No vision-only place is shared: no colour answer, equal size predictions (half a point).
    assert priors["colour"]["by_place"] == 0.0 and priors["size"]["by_place"] == 0.5


def test_shuffled_text_attributes_remove_the_kind_and_place_cues():
    real = build_ontology(127, 0.5, seed=0)
    shuffled = build_ontology(127, 0.5, seed=0, shuffle_text_attributes=True)
    facts = lambda cats: [(c.name, c.colour, c.size, c.shape, c.grounded) for c in cats]  # noqa: E731
    assert facts(shuffled) == facts(real)  # same nouns, colours, sizes, shapes and split
    assert sorted((c.kind, c.place) for c in shuffled) == sorted((c.kind, c.place) for c in real)
    assert sum(a.kind != b.kind for a, b in zip(real, shuffled, strict=True)) > 100
    cue, no_cue = text_priors(real), text_priors(shuffled)
    assert cue["colour"]["by_kind"] >= 0.2 and cue["size"]["by_kind"] >= 0.7  # real nouns: kind tells a lot
    assert no_cue["colour"]["by_kind"] <= 0.15 and no_cue["size"]["by_kind"] <= 0.6


def test_default_world_has_no_vision_only_leaks_and_knobs_move_the_counts(world, tmp_path):
    report = json.loads((world / "leakage.json").read_text())
    assert report["vision_only_total"] == 0
    assert set(report["text_priors"]) == {"colour", "size", "vision_only"} and report["text_priors"]["vision_only"] > 0
    assert all(s["grounded_colour"] > 0 for n, s in report["streams"].items() if n in ("text", "pairs", "interleaved"))
    leaky = build_world(
        world_config("tiny", {**SMALL, "leakage": {"vision_only_caption": 0.5, "vision_only_text": 0.3}}),
        tmp_path / "leaky",
        seed=0,
        progress=False,
        echo=lambda s: None,
    )["leakage"]
    assert leaky["streams"]["pairs"]["vision_only_colour"] > 20
    assert leaky["streams"]["text"]["vision_only_colour"] > 5 and leaky["streams"]["text"]["vision_only_size"] > 5
    assert leaky["streams"]["interleaved"]["vision_only_colour"] == 0  # its own knob stayed at 0


def test_world_shards_read_back_through_the_real_format_readers(world):
    skips = SkipLog()
    pairs = [r for p in sorted((world / "pairs").glob("*.tar")) for r in read_pairs(p, skips)]
    docs = [r for p in sorted((world / "interleaved").glob("*.tar")) for r in read_interleaved(p, skips)]
    texts = [r for p in sorted((world / "text").glob("*.jsonl")) for r in read_text(p, skips)]
    instructions = [r for p in sorted((world / "instructions").glob("*.jsonl")) for r in read_instructions(p, skips)]
    assert (len(pairs), len(docs), len(texts), len(instructions)) == (600, 150, len(texts), 200) and len(texts) > 500
    assert skips.total == 0
    assert decode_image(pairs[0].image).size == (32, 32)
    assert all(2 <= sum(isinstance(p, bytes) for p in d.parts) <= 4 for d in docs)
    assert all(isinstance(d.parts[0], bytes) for d in docs)  # each paragraph follows its image
    assert all(i.input.startswith("Question: ") and i.input.endswith("Answer:") for i in instructions)


def test_a_world_mixture_feeds_the_tiny_model(world):
    tok = load_tokenizer(world)
    model = tiny_model(decoder={"vocab_size": tok.vocab_size}, vision={"image_size": 32})
    streams = [
        StreamConfig("text", "text", [str(world / "text" / "*.jsonl")], 4),
        StreamConfig("pairs", "pairs", [str(world / "pairs" / "*.tar")], 4),
        StreamConfig("interleaved", "interleaved", [str(world / "interleaved" / "*.tar")], 2),
        StreamConfig("instructions", "instructions", [str(world / "instructions" / "*.jsonl")], 2),
    ]
    mix = Mixture(streams, tok, model.num_image_tokens, max_len=64, transform=ImageTransform(32))
    batches = mix.next_batch()
    for name, b in batches.items():
        out = model(b.input_ids, b.images, b.attention_mask, b.loss_mask)
        assert torch.isfinite(out.loss), name
    assert batches["interleaved"].images.shape[0] == int((batches["interleaved"].input_ids == tok.special.image).sum())


def test_eval_sets_cover_every_task_with_held_out_images(world):
    tasks = json.loads((world / "world.json").read_text())["tasks"]
    train_images = {
        hashlib.sha256(r.image).hexdigest() for p in (world / "pairs").glob("*.tar") for r in read_pairs(p, SkipLog())
    }
    for task in tasks:
        rows = [json.loads(line) for line in (world / "eval" / f"{task}.jsonl").read_text().splitlines()]
        assert rows, task
        for row in rows:
            names = [row["image"]] if "image" in row else []
            if task == "raven":
                names += row["context"] + row["candidates"]
            for name in names:
                if name:
                    assert hashlib.sha256((world / "eval" / name).read_bytes()).hexdigest() not in train_images
    colour = [
        json.loads(line) for line in (world / "eval" / "visual_commonsense_colour.jsonl").read_text().splitlines()
    ]
    assert {r["grounded"] for r in colour} == {True, False} and all(r["candidates"] == list(COLOURS) for r in colour)
    size = [json.loads(line) for line in (world / "eval" / "visual_commonsense_size.jsonl").read_text().splitlines()]
    assert Counter(r["answer"] for r in size) == {"Yes": 20, "No": 20}
    # Instruction following in text: the stream's format, answered with the category's text facts.
    cats = {c["name"]: c for c in json.loads((world / "world.json").read_text())["categories"]}
    qa = [json.loads(line) for line in (world / "eval" / "text_qa.jsonl").read_text().splitlines()]
    assert len(qa) == SMALL["eval"].get("text_qa", 200) and {r["type"] for r in qa} == {"kind", "place"}
    for r in qa:
        cat = cats[r["category"]]
        assert r["answer"].endswith(cat["kind"] if r["type"] == "kind" else f"in the {cat['place']}")
        assert "color" not in r["question"] and "larger" not in r["question"]  # no vision-only fact asked


def _value(panel, attr):
    return panel.slots if attr == "position" else getattr(panel, attr)


def test_raven_candidates_are_balanced_and_follow_the_rules():
    rng = __import__("numpy").random.default_rng(0)
    seen_rules = Counter()
    for i in range(300):
        context, answer, rules = make_matrix(rng, size3=i % 2 == 0)
        assert len(context) == (8 if i % 2 == 0 else 3)
        assert ("number" in rules) != ("position" in rules)  # exactly one rule in that group
        cols = 3 if i % 2 == 0 else 2
        panels = context + [answer]
        rows = [panels[r * cols : (r + 1) * cols] for r in range(cols)]
        slots = {"center": 1, "grid2": 4, "grid3": 9}[answer.layout]
        for attr, rule in rules.items():
            seen_rules[(attr, rule)] += 1
            for row in rows:
                vals = [_value(p, attr) for p in row]
                if rule == "constant":
                    assert len(set(vals)) == 1
                elif rule == "progression" and attr == "position":
                    steps = {
                        s
                        for s in range(1, slots)
                        if all(tuple(sorted((v + s) % slots for v in a)) == b for a, b in zip(vals, vals[1:]))
                    }
                    assert steps, vals
                elif rule == "progression":
                    assert len({b - a for a, b in zip(vals, vals[1:])}) == 1 and vals[0] != vals[1]
                elif rule == "arithmetic":
                    assert vals[2] == vals[0] + vals[1] + (1 if attr == "size" else 0)
            if rule == "distribute_three":
                assert len({tuple(sorted(_value(p, attr) for p in row)) for row in rows}) == 1
                assert all(len(set(_value(p, attr) for p in row)) == 3 for row in rows)
        cands, target = candidates(answer, rng)
        assert len(cands) == 6 and cands[target] == answer and sum(c == answer for c in cands) == 1
        # The answer's value of every attribute is never the unique mode of the candidates (I-RAVEN balance).
        for attr in ("number", "position", "type", "size", "colour"):
            counts = Counter(_value(c, attr) for c in cands)
            top = max(counts.values())
            assert counts[_value(answer, attr)] < top or list(counts.values()).count(top) > 1 or len(counts) == 1
    assert {
        ("position", "progression"),
        ("position", "distribute_three"),
        ("number", "arithmetic"),
        ("size", "arithmetic"),
        ("type", "distribute_three"),
    } <= set(seen_rules)


def test_a_found_world_must_match_the_settings_the_run_names(world):
    from toolkit.config import ConfigError
    from toolkit.world.build import ensure_world, world_identity

    ensure_world(world, "tiny", 0, SMALL, echo=lambda s: None)  # built with these: nothing to do
    with pytest.raises(ConfigError, match=r"built with other settings .* differ in counts.instructions"):
        ensure_world(world, "tiny", 0, None)
    with pytest.raises(ConfigError, match=r"differ in world_seed"):
        ensure_world(world, "tiny", 1, SMALL)
    # A world is named by what it is: its identity does not depend on where it lives.
    assert world_identity(world, "tiny", 0, SMALL) == world_identity("/nowhere/yet", "tiny", 0, SMALL)
    assert world_identity(world, "tiny", 0, SMALL) != world_identity("/nowhere/yet", "tiny", 0, None)


def test_transfer_switches_change_the_world_as_documented_and_leak_nothing(tmp_path):
    """noun_first_fraction, caption_templates, renders_per_category and invented nouns past the real
    list: each does what its comment says, and no vision-only colour or size reaches text."""
    settings = {**SMALL, "noun_first_fraction": 0.5, "caption_templates": 1, "renders_per_category": 2}
    manifest = build_world(
        world_config("tiny", {**settings, "num_categories": 160}),
        tmp_path / "w",
        0,
        progress=False,
        echo=lambda s: None,
    )
    world = tmp_path / "w"
    assert manifest["leakage"]["vision_only_total"] == 0
    cats = json.loads((world / "world.json").read_text())["categories"]
    names = {c["name"] for c in cats}
    real = {c.name for c in build_ontology(127, 0.5, seed=0)}
    invented = names - real
    assert len(cats) == len(names) == 160 and len(invented) == 33 and real <= names
    colours = Counter(c["colour"] for c in cats)
    assert max(colours.values()) - min(colours.values()) <= 1
    vision_only = {c["name"] for c in cats if not c["grounded"]}
    assert invented & vision_only and invented - vision_only  # invented nouns are split like real ones

    skips = SkipLog()
    pairs = [r for p in sorted((world / "pairs").glob("*.tar")) for r in read_pairs(p, skips)]
    docs = [r for p in sorted((world / "interleaved").glob("*.tar")) for r in read_interleaved(p, skips)]
    texts = " ".join(r.text for p in sorted((world / "text").glob("*.jsonl")) for r in read_text(p, skips))
    assert len(set(texts.lower().split()) & invented) > 20  # invented nouns live in the text too

    def nouns_of(caption):  # the category nouns a text names, each once, in order
        return list(dict.fromkeys(w for w in re.findall(r"[a-z]+", caption.lower()) if w in names))

    single = [r for r in pairs if len(nouns_of(r.caption)) == 1 and "Question:" not in r.caption]
    first = [r for r in single if "<image>" in r.caption]
    after = [r for r in single if "<image>" not in r.caption]
    assert 0.35 < len(first) / len(single) < 0.65  # noun_first_fraction 0.5 of the object captions
    for r in first:  # named, then the image, then a text fact; a vision-only noun without its colour
        named, _, fact = r.caption.partition("<image>")
        assert named.strip().endswith(":") and nouns_of(fact) == nouns_of(named)
    # caption_templates: 1 keeps only "A lemon ." (and "A yellow lemon ." where the colour may be said)
    objects = [r.caption for r in after if " and " not in r.caption and " than " not in r.caption]
    assert len(objects) > 100 and all(c.split()[0] in ("A", "An") and c.count(" ") <= 3 for c in objects)
    # renders_per_category: 2 distinct training images per category at most
    renders: dict[str, set] = {}
    for r in single:
        renders.setdefault(nouns_of(r.caption)[0], set()).add(hashlib.sha256(r.image).hexdigest())
    assert max(len(v) for v in renders.values()) == 2
    # interleaved: "Here is a lemon :" before its image, the paragraph after it
    intro = [
        (d.parts[i], d.parts[i + 2])
        for d in docs
        for i in range(len(d.parts) - 2)
        if isinstance(d.parts[i + 1], bytes) and isinstance(d.parts[i], str)
    ]
    intro = [(a, b) for a, b in intro if a.startswith("Here is")]
    assert len(intro) > 50 and all(nouns_of(a) == nouns_of(b)[:1] for a, b in intro)

    # Through the trainer's sequence builder: the noun's tokens come before the image span.
    tok = load_tokenizer(world)
    from toolkit.data.sequences import SequenceBuilder

    seq = SequenceBuilder(tok, 8, 64, ImageTransform(32)).caption(first[0])
    start = seq.ids.index(tok.special.image)
    assert tok.decode(seq.ids[1:start]).strip() == first[0].caption.partition("<image>")[0].strip()
    assert seq.ids[start : start + 10] == [tok.special.image] + [tok.special.image_pad] * 8 + [tok.special.image_end]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"caption_templates": 9}, "world.caption_templates=9: expected 0 (all) or 1..5"),
        ({"noun_first_fraction": 1.5}, "world.noun_first_fraction=1.5: expected a share in [0, 1]"),
        ({"object_shape_questions": -0.1}, "world.object_shape_questions=-0.1: expected a share in [0, 1]"),
        ({"renders_per_category": -1}, "world.renders_per_category=-1"),
        ({"generic_fraction": 0.9}, "world.scene_fraction + world.generic_fraction"),
        ({"num_categories": 5}, "world.num_categories=5: at least 11"),
    ],
)
def test_world_switches_refuse_values_outside_their_range(override, message):
    from toolkit.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        world_config("tiny", override)


def test_object_shape_questions_ask_the_pictured_objects_shape():
    from toolkit.world.corpora import Corpora

    cats = build_ontology(127, 0.5, seed=0)
    shape_of = {c.name: c.shape for c in cats}
    for share, low, high in ((0.0, 0, 0), (0.5, 30, 90)):
        corpora = Corpora(world_config("tiny", {"object_shape_questions": share}), cats, 0)
        asked = []
        rng = np.random.default_rng(0)
        for cat in cats * 3:
            caption = corpora.object_caption(cat, rng)
            if "what shape" in caption:
                asked.append((cat.name, caption))
        assert low <= len(asked) <= high
        assert all(caption.endswith(f"Answer: {shape_of[name]} .") for name, caption in asked)


def test_text_states_colours_in_the_words_the_colour_task_scores(world):
    """The cloze form the colour task prompts with ("The color of the lemon is?") is answered in the
    training text by the task's own candidate (lowercase " yellow"), never by another token ("Yellow")."""
    from toolkit.eval.tasks import TASKS

    candidates = set(TASKS.get("world-colour").candidates)
    cats = {c["name"]: c for c in json.loads((world / "world.json").read_text())["categories"]}
    answers = []
    for path in sorted((world / "text").glob("*.jsonl")):
        for record in read_text(path, SkipLog()):
            answers += re.findall(r"[Tt]he color of the ([a-z ]+?) is\? (\S+) \.", record.text)
    assert len(answers) >= 10
    for name, word in answers:
        assert word in candidates and word == cats[name]["colour"] and cats[name]["grounded"], (name, word)


def test_a_world_from_an_older_generator_is_not_reused(world, tmp_path):
    import shutil

    from toolkit.config import ConfigError
    from toolkit.world.build import ensure_world, world_identity

    old = tmp_path / "old"
    shutil.copytree(world, old)
    meta = json.loads((old / "world.json").read_text())
    del meta["generator"]  # as worlds were written before the generator was recorded
    (old / "world.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"old was written by world generator 1 and this xmt writes generator 2"):
        ensure_world(old, "tiny", 0, SMALL)
    assert world_identity(old, "tiny", 0, SMALL) != world_identity(world, "tiny", 0, SMALL)


def test_plain_shape_pairs_follow_generic_fraction_and_leak_nothing(tmp_path):
    """generic_fraction (the plain-shapes study): that share of the pairs shows a plain coloured shape,
    captioned in one of three forms ("A red star .", its colour or its shape as a question), none at
    0; no vision-only fact reaches text."""
    from toolkit.world.ontology import SHAPES

    shares = {}
    for fraction in (0.0, 0.4):
        out = tmp_path / f"w{fraction}"
        manifest = build_world(
            world_config("tiny", {**SMALL, "generic_fraction": fraction}), out, 0, progress=False, echo=lambda s: None
        )
        assert manifest["leakage"]["vision_only_total"] == 0
        pairs = [r for p in sorted((out / "pairs").glob("*.tar")) for r in read_pairs(p, SkipLog())]
        # the two forms only a plain shape takes (an object's colour question reads like the third)
        named = re.compile(rf"^A ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) \.$")
        plain = [r for r in pairs if named.match(r.caption) or r.caption.startswith("Question: what shape is this?")]
        shares[fraction] = len(plain) / len(pairs)
    assert shares[0.0] == 0.0 and 0.2 < shares[0.4] < 0.34  # 2 of the 3 forms of 40% of the pairs
