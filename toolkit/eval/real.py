"""Loaders and tasks for the real benchmarks, read from their published formats at local paths.

Nothing is downloaded: pass each dataset's path with `xmt eval ... --data TASK=PATH` (or place it at
the default path under `data/`). A missing path names the file and format expected; a malformed
record is skipped and counted.
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from toolkit.config import DataError
from toolkit.data.shards import SkipLog
from toolkit.eval.examples import LOADERS, Example, read_jsonl
from toolkit.eval.prompts import BUILDERS
from toolkit.eval.tasks import COLOURS, SENTIMENT_PROMPT, VQA_PROMPT, TaskSpec, register

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: expected {what}")
    return path


def _nonempty(examples: list[Example], path: Path, what: str) -> list[Example]:
    if not examples:
        raise DataError(f"{path}: no valid records (expected {what})")
    return examples


def _first_existing(candidates: list[Path], what: str) -> Path:
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"image not found: tried {', '.join(str(c) for c in candidates[:3])} ({what})")


# ------------------------------------------------------------------ captioning and VQA


@LOADERS.register("karpathy_captions")
def karpathy_captions(path, skips: SkipLog, split: str = "test") -> list[Example]:
    """Karpathy split json (dataset_coco.json / dataset_flickr30k.json): `images` with filepath,
    filename, split and `sentences` (raw). Images under the json's directory (filepath/filename,
    filename, or images/filename)."""
    path = _need(Path(path), "a Karpathy split json (dataset_coco.json or dataset_flickr30k.json)")
    root = path.parent
    out = []
    for i, img in enumerate(json.loads(path.read_text()).get("images", [])):
        try:
            if img.get("split") != split:
                continue
            refs = [s["raw"] for s in img["sentences"]]
            name = img["filename"]
            image = _first_existing(
                [root / img.get("filepath", "") / name, root / name, root / "images" / name], "Karpathy images"
            )
            out.append(Example(str(img.get("cocoid", img.get("imgid", i))), [image], {}, refs[0], answers=refs))
        except (KeyError, TypeError, FileNotFoundError) as err:
            skips.skip("malformed or imageless caption record", f"{path}: image {i}: {err}")
    return _nonempty(out, path, f"images with split '{split}'")


@LOADERS.register("vqav2")
def vqav2(path, skips: SkipLog) -> list[Example]:
    """A directory with the VQAv2 questions json (*questions*.json: `questions`) and annotations json
    (*annotations*.json: `annotations` with 10 `answers`); images COCO_<split>_<id:012d>.jpg or <id>.jpg
    in the directory, images/ or val2014/."""
    root = _need(Path(path), "a directory with VQAv2 *questions*.json, *annotations*.json and the images")
    qfile = next(iter(sorted(root.glob("*questions*.json"))), None)
    afile = next(iter(sorted(root.glob("*annotations*.json"))), None)
    if qfile is None or afile is None:
        raise FileNotFoundError(f"{root}: expected *questions*.json and *annotations*.json (VQAv2 format)")
    answers = {
        a["question_id"]: [x["answer"] for x in a["answers"]] for a in json.loads(afile.read_text())["annotations"]
    }
    out = []
    for q in json.loads(qfile.read_text())["questions"]:
        try:
            iid = int(q["image_id"])
            names = [f"COCO_val2014_{iid:012d}.jpg", f"COCO_test2015_{iid:012d}.jpg", f"{iid}.jpg", f"{iid:012d}.jpg"]
            image = _first_existing(
                [d / n for d in (root, root / "images", root / "val2014") for n in names], "VQAv2 images"
            )
            ans = answers[q["question_id"]]
            out.append(Example(str(q["question_id"]), [image], {"question": q["question"]}, ans[0], answers=ans))
        except (KeyError, TypeError, ValueError, FileNotFoundError) as err:
            skips.skip("malformed VQAv2 question", f"{qfile}: {q.get('question_id')}: {err}")
    return _nonempty(out, root, "questions with annotations and images")


@LOADERS.register("vizwiz")
def vizwiz(path, skips: SkipLog) -> list[Example]:
    """VizWiz annotation json (a list of {image, question, answers: [{answer}]}); images next to it,
    in images/ or in a folder named like the json (val.json -> val/)."""
    path = _need(Path(path), "a VizWiz annotation json (e.g. val.json)")
    out = []
    for i, r in enumerate(json.loads(path.read_text())):
        try:
            name = r["image"]
            image = _first_existing(
                [path.parent / name, path.parent / "images" / name, path.parent / path.stem / name], "VizWiz images"
            )
            ans = [a["answer"] for a in r["answers"]]
            out.append(Example(str(i), [image], {"question": r["question"]}, ans[0], answers=ans))
        except (KeyError, TypeError, FileNotFoundError) as err:
            skips.skip("malformed VizWiz record", f"{path}: {i}: {err}")
    return _nonempty(out, path, "records with image, question, answers")


@LOADERS.register("class_folders")
def class_folders(path, skips: SkipLog) -> list[Example]:
    """ImageNet-style root/<class folder>/<image>; class names from labels.txt (`folder<TAB>name` per
    line) when present, else the folder name with underscores as spaces."""
    root = _need(Path(path), "a directory of class folders (root/<class>/<image>)")
    names = {}
    if (root / "labels.txt").is_file():
        for line in (root / "labels.txt").read_text().splitlines():
            if "\t" in line:
                folder, name = line.split("\t", 1)
                names[folder.strip()] = name.split(",")[0].strip()
    folders = sorted(d for d in root.iterdir() if d.is_dir())
    labels = [names.get(d.name, d.name.replace("_", " ")) for d in folders]
    out = []
    for folder, label in zip(folders, labels):
        for img in sorted(folder.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                out.append(Example(f"{folder.name}/{img.name}", [img], {}, label, candidates=labels))
    return _nonempty(out, root, "images in class folders")


@LOADERS.register("hateful_memes")
def hateful_memes(path, skips: SkipLog) -> list[Example]:
    """HatefulMemes jsonl ({id, img, label, text}); `img` relative to the jsonl's directory."""
    path = _need(Path(path), "HatefulMemes jsonl (dev.jsonl: id, img, label, text)")
    out = []
    for line_no, r in read_jsonl(path, skips, ("img", "label")):
        image = path.parent / r["img"]
        if not image.is_file():
            skips.skip("missing image", f"{path}:{line_no}: {image}")
            continue
        out.append(
            Example(str(r.get("id", line_no)), [image], {"text": r.get("text", "")}, "yes" if int(r["label"]) else "no")
        )
    return _nonempty(out, path, "records with img and label")


@LOADERS.register("sst2_rendered")
def sst2_rendered(path, skips: SkipLog, size: int = 224) -> list[Example]:
    """SST-2 tsv (header `sentence<TAB>label`, 1 = positive); each sentence is rendered to an image."""
    from toolkit.world.render import render_text

    path = _need(Path(path), "an SST-2 tsv with columns sentence and label")
    out = []
    with path.open(encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if not reader.fieldnames or not {"sentence", "label"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected a header with sentence and label, got {reader.fieldnames}")
        for line_no, row in enumerate(reader, 2):
            try:
                label = "positive" if int(row["label"]) == 1 else "negative"
            except (TypeError, ValueError):
                skips.skip("SST-2 row without a 0/1 label", f"{path}:{line_no}")
                continue
            rng = np.random.default_rng(line_no)
            image = render_text(row["sentence"], size, rng, font_size=max(8, size // 14))
            out.append(Example(str(line_no), [image], {}, label, meta={"text": row["sentence"]}))
    return _nonempty(out, path, "sentences with labels")


# ------------------------------------------------------------------ language multiple choice


def _mc(path, skips: SkipLog, required: tuple[str, ...], make) -> list[Example]:
    path = _need(Path(path), f"jsonl with fields {', '.join(required)} (Hugging Face layout)")
    out = []
    for line_no, r in read_jsonl(path, skips, required):
        try:
            out.append(make(line_no, r))
        except (KeyError, TypeError, ValueError, IndexError) as err:
            skips.skip("malformed record", f"{path}:{line_no}: {err!r}")
    return _nonempty(out, path, f"records with {', '.join(required)}")


@LOADERS.register("storycloze")
def storycloze(path, skips):
    keys = (
        "input_sentence_1",
        "input_sentence_2",
        "input_sentence_3",
        "input_sentence_4",
        "sentence_quiz1",
        "sentence_quiz2",
        "answer_right_ending",
    )
    return _mc(
        path,
        skips,
        keys,
        lambda i, r: Example(
            str(r.get("story_id", i)),
            [],
            {"context": " ".join(r[k] for k in keys[:4])},
            r[f"sentence_quiz{int(r['answer_right_ending'])}"],
            candidates=[r["sentence_quiz1"], r["sentence_quiz2"]],
        ),
    )


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@LOADERS.register("hellaswag")
def hellaswag(path, skips):
    def make(i, r):
        ctx = r["ctx"] if "ctx" in r else r["ctx_a"] + " " + r["ctx_b"].capitalize()
        ends = [_hellaswag_clean(e) for e in r["endings"]]
        return Example(
            str(r.get("ind", i)),
            [],
            {"context": _hellaswag_clean(r.get("activity_label", "") + ": " + ctx)},
            ends[int(r["label"])],
            candidates=ends,
        )

    return _mc(path, skips, ("endings", "label"), make)


@LOADERS.register("piqa")
def piqa(path, skips):
    return _mc(
        path,
        skips,
        ("goal", "sol1", "sol2", "label"),
        lambda i, r: Example(
            str(i),
            [],
            {"context": f"Question: {r['goal']}\nAnswer:"},
            [r["sol1"], r["sol2"]][int(r["label"])],
            candidates=[r["sol1"], r["sol2"]],
        ),
    )


@LOADERS.register("boolq")
def boolq(path, skips):
    def make(i, r):
        gold = r["answer"] if "answer" in r else bool(int(r["label"]))
        return Example(
            str(r.get("idx", i)),
            [],
            {"context": f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:"},
            "yes" if gold else "no",
            candidates=["yes", "no"],
        )

    return _mc(path, skips, ("question", "passage"), make)


@LOADERS.register("cb")
def cb(path, skips):
    labels = ["True", "False", "Neither"]  # 0 entailment, 1 contradiction, 2 neutral (SuperGLUE)
    return _mc(
        path,
        skips,
        ("premise", "hypothesis", "label"),
        lambda i, r: Example(
            str(r.get("idx", i)),
            [],
            {"context": f"{r['premise']}\nQuestion: {r['hypothesis']}. True, False, or Neither?\nAnswer:"},
            labels[int(r["label"])],
            candidates=labels,
        ),
    )


def _copa_example(i, premise: str, question: str, c1: str, c2: str, label: int) -> Example:
    joiner = "because" if question == "cause" else "therefore"
    cands = [c[0].lower() + c[1:] if c else c for c in (c1, c2)]
    return Example(str(i), [], {"context": f"{premise.strip().rstrip('.')} {joiner}"}, cands[label], candidates=cands)


@LOADERS.register("copa")
def copa(path, skips):
    """COPA as jsonl (premise, choice1, choice2, question, label) or the original xml."""
    path = _need(Path(path), "COPA jsonl (premise, choice1, choice2, question, label) or copa-*.xml")
    if path.suffix == ".xml":
        out = []
        for item in ET.parse(path).getroot().iter("item"):
            try:
                out.append(
                    _copa_example(
                        item.get("id"),
                        item.find("p").text,
                        item.get("asks-for"),
                        item.find("a1").text,
                        item.find("a2").text,
                        int(item.get("most-plausible-alternative")) - 1,
                    )
                )
            except (AttributeError, TypeError, ValueError) as err:
                skips.skip("malformed COPA item", f"{path}: item {item.get('id')}: {err!r}")
        return _nonempty(out, path, "COPA items")
    return _mc(
        path,
        skips,
        ("premise", "choice1", "choice2", "question", "label"),
        lambda i, r: _copa_example(
            r.get("idx", i), r["premise"], r["question"], r["choice1"], r["choice2"], int(r["label"])
        ),
    )


def _partial(context_with_option: str, rest: str) -> tuple[str, str]:
    return context_with_option.strip(), rest.strip()


@LOADERS.register("winogrande")
def winogrande(path, skips):
    def make(i, r):
        before, _, after = r["sentence"].partition("_")
        opts = [r["option1"], r["option2"]]
        gold = opts[int(r["answer"]) - 1]
        return Example(
            str(i),
            [],
            {"options_context": [before + o for o in opts], "continuation": after, "solved": before + gold + after},
            gold,
            candidates=opts,
        )

    return _mc(path, skips, ("sentence", "option1", "option2", "answer"), make)


def _wsc_option(option: str, before: str) -> str:
    option = option.strip()
    at_start = not before.strip() or before.strip()[-1] in ".!?"
    if not at_start and option.split(" ", 1)[0] in ("The", "A", "An"):
        option = option[0].lower() + option[1:]
    return option


@LOADERS.register("winograd")
def winograd(path, skips):
    """WSC273 as jsonl (HF winograd_wsc: text, pronoun_loc, pronoun, options, label) or WSCollection.xml."""
    path = _need(Path(path), "WSC jsonl (text, pronoun, pronoun_loc, options, label) or WSCollection.xml")
    out = []
    if path.suffix == ".xml":
        for i, schema in enumerate(ET.parse(path).getroot().iter("schema")):
            if i >= 273:  # WSC273: the first 273 schemas
                break
            try:
                before = " ".join(schema.find("text/txt1").text.split())
                after = " ".join(schema.find("text/txt2").text.split())
                opts = [_wsc_option(a.text, before) for a in schema.findall("answers/answer")]
                gold = "AB".index(schema.find("correctAnswer").text.strip().rstrip(".")[0])
                fields = {
                    "options_context": [f"{before} {o}" for o in opts],
                    "continuation": after,
                    "solved": f"{before} {opts[gold]} {after}",
                }
                out.append(Example(str(i), [], fields, opts[gold], candidates=opts))
            except (AttributeError, ValueError, IndexError) as err:
                skips.skip("malformed WSC schema", f"{path}: schema {i}: {err!r}")
        return _nonempty(out, path, "WSC schemas")

    def make(i, r):
        loc = int(r["pronoun_loc"])
        before, after = r["text"][:loc], r["text"][loc + len(r["pronoun"]) :]
        opts = [_wsc_option(o, before) for o in r["options"]]
        gold = opts[int(r["label"])]
        fields = {"options_context": [before + o for o in opts], "continuation": after, "solved": before + gold + after}
        return Example(str(i), [], fields, gold, candidates=opts)

    return _mc(path, skips, ("text", "pronoun", "pronoun_loc", "options", "label"), make)


@BUILDERS.register("partial")
def partial_requests(task, ex: Example):
    """Winograd-style partial scoring: the option replaces the blank; the rest of the sentence is scored.
    A demonstration (few-shot) is another schema's sentence with its right option in place."""
    return [([ctx.strip()], ex.fields["continuation"].strip()) for ctx in ex.fields["options_context"]]


# ------------------------------------------------------------------ visual commonsense (text only)

COLOUR_PARAPHRASES = (  # the colour question in other words (a prompt effect is a random factor)
    "What color is {object}? Answer:",
    "Q: What is the color of {object}? A:",
    "The typical color of {object} is",
    "Question: which color does {object} have? Answer:",
    "In a photo, {object} would be colored",
)
SIZE_PARAPHRASES = (
    "Question: is {item1} bigger than {item2}? Answer:",
    "Q: Is {item1} larger in size than {item2}? A:",
    "Is {item1} bigger than {item2}?",
    "Answer Yes or No. Is {item1} larger than {item2}?",
    "Compared with {item2}, is {item1} larger?",
)


@LOADERS.register("memorycolor")
def memorycolor(path, skips):
    """MemoryColor csv (Index, Descriptor, Item, Color) or jsonl (descriptor, item, label); the object is
    "{descriptor} {item}", with "the" for an empty descriptor."""
    path = _need(Path(path), "MemoryColor memory_color_data.csv or memory_colors.jsonl")
    rows = []
    if path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = [
                (i, r.get("Descriptor", ""), r.get("Item"), r.get("Color")) for i, r in enumerate(csv.DictReader(f), 2)
            ]
    else:
        rows = [
            (i, r.get("descriptor", ""), r.get("item"), r.get("label"))
            for i, r in read_jsonl(path, skips, ("item", "label"))
        ]
    objects = [
        (line, f"{(desc or '').strip() or 'the'} {item.strip()}" if item else "", colour)
        for line, desc, item, colour in rows
    ]
    return _colour_examples(objects, path, skips)


def _colour_examples(rows, path: Path, skips: SkipLog) -> list[Example]:
    """(line, object phrase, colour) rows -> examples; rows without an object or a basic colour are skipped."""
    out = []
    for line, obj, colour in rows:
        colour = (colour or "").strip().lower()
        if not obj or colour not in COLOURS:
            skips.skip("row without an object or a basic colour", f"{path}:{line}")
            continue
        out.append(Example(str(line), [], {"object": obj}, colour))
    return _nonempty(out, path, "objects with one of the 11 colours")


@LOADERS.register("colorterms")
def colorterms(path, skips):
    """ColorTerms csv (object, color); asked about as "the {object}"."""
    path = _need(Path(path), "ColorTerms color-concrete-objects.csv (object, color)")
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = [
            (line, f"the {r['object'].strip()}" if r.get("object") else "", r.get("color"))
            for line, r in enumerate(csv.DictReader(f), 2)
        ]
    return _colour_examples(rows, path, skips)


@LOADERS.register("relativesize")
def relativesize(path, skips):
    """RelativeSize sizePairsFull.txt (`bigger smaller` per line), asked in both orders."""
    path = _need(Path(path), "RelativeSize sizePairsFull.txt (lines 'bigger smaller')")
    out = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2:
            if line.strip():
                skips.skip("line is not two objects", f"{path}:{line_no}")
            continue
        big, small = parts
        out.append(Example(f"{line_no}a", [], {"item1": big, "item2": small}, "Yes"))
        out.append(Example(f"{line_no}b", [], {"item1": small, "item2": big}, "No"))
    return _nonempty(out, path, "object pairs")


# ------------------------------------------------------------------ Raven IQ folder


@LOADERS.register("raven_folder")
def raven_folder(path, skips):
    """IQ50-style puzzles: root/<id>/context/* (in name order), root/<id>/candidates/* and
    root/<id>/answer.txt holding the 1-based number of the right candidate."""
    root = _need(Path(path), "a folder of puzzles: <id>/context/, <id>/candidates/, <id>/answer.txt")
    out = []
    for puzzle in sorted(d for d in root.iterdir() if d.is_dir()):
        try:
            ctx = sorted(p for p in (puzzle / "context").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            cands = sorted(p for p in (puzzle / "candidates").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            answer = int((puzzle / "answer.txt").read_text().strip()) - 1
            if not ctx or not 0 <= answer < len(cands):
                raise ValueError(f"answer {answer + 1} of {len(cands)} candidates, {len(ctx)} context images")
            out.append(
                Example(
                    puzzle.name,
                    ctx + cands,
                    {"n_context": len(ctx)},
                    str(answer),
                    candidates=[str(i) for i in range(len(cands))],
                )
            )
        except (OSError, ValueError) as err:
            skips.skip("malformed puzzle folder", f"{puzzle}: {err}")
    return _nonempty(out, root, "puzzle folders")


# ------------------------------------------------------------------ the tasks

register(
    TaskSpec(
        "coco-captioning",
        "captioning",
        "karpathy_captions",
        "data/coco/dataset_coco.json",
        "<image>An image of",
        mode="generate",
        metric="cider",
        max_new_tokens=20,
        num_beams=5,
    )
)
register(
    TaskSpec(
        "flickr30k-captioning",
        "captioning",
        "karpathy_captions",
        "data/flickr30k/dataset_flickr30k.json",
        "<image>An image of",
        mode="generate",
        metric="cider",
        max_new_tokens=20,
        num_beams=5,
    )
)
register(TaskSpec("vqav2", "vqa", "vqav2", "data/vqav2", VQA_PROMPT, mode="generate", metric="vqa", max_new_tokens=10))
register(
    TaskSpec(
        "vizwiz", "vqa", "vizwiz", "data/vizwiz/val.json", VQA_PROMPT, mode="generate", metric="vqa", max_new_tokens=10
    )
)
register(
    TaskSpec(
        "imagenet",
        "classification",
        "class_folders",
        "data/imagenet/val",
        "<image>The photo of the",
        mode="generate",
        metric="accuracy",
        max_new_tokens=10,
        num_beams=2,
    )
)
register(
    TaskSpec(
        "imagenet-constrained",
        "classification",
        "class_folders",
        "data/imagenet/val",
        "<image>The photo of the",
        mode="generate",
        metric="accuracy",
        max_new_tokens=10,
        num_beams=2,
        constrained=True,
    )
)
register(
    TaskSpec(
        "hateful-memes",
        "ocr",
        "hateful_memes",
        "data/hateful_memes/dev.jsonl",
        "<image>Question: does this picture contain real hate speech? Answer:",
        candidates=("yes", "no"),
        metric="roc_auc",
        positive="yes",
    )
)
register(
    TaskSpec(
        "rendered-sst2",
        "ocr",
        "sst2_rendered",
        "data/sst2/dev.tsv",
        SENTIMENT_PROMPT,
        candidates=("positive", "negative"),
    )
)
register(
    TaskSpec(
        "rendered-sst2-cot",
        "cot",
        "sst2_rendered",
        "data/sst2/dev.tsv",
        "<image>{rationale} Question: what is the sentiment of the opinion? Answer:",
        mode="cot",
        candidates=("positive", "negative"),
        rationale_prompt="<image>Introduce this picture in detail:",
        max_new_tokens=20,
        few_shot=False,
    )
)
for _name, _loader, _file, _norm in [
    ("storycloze", "storycloze", "data/storycloze/test.jsonl", False),
    ("hellaswag", "hellaswag", "data/hellaswag/validation.jsonl", True),
    ("piqa", "piqa", "data/piqa/validation.jsonl", False),
    ("boolq", "boolq", "data/boolq/validation.jsonl", False),
    ("cb", "cb", "data/cb/validation.jsonl", False),
    ("copa", "copa", "data/copa/copa-test.xml", False),
]:
    register(TaskSpec(_name, "language", _loader, _file, "{context}", length_norm=_norm, paper_prompt=False))
register(
    TaskSpec(
        "winograd",
        "language",
        "winograd",
        "data/wsc273/WSCollection.xml",
        builder="partial",
        demo="{solved}",
        paper_prompt=False,
    )
)
register(
    TaskSpec(
        "winogrande",
        "language",
        "winogrande",
        "data/winogrande/validation.jsonl",
        builder="partial",
        demo="{solved}",
        paper_prompt=False,
    )
)
register(
    TaskSpec(
        "memorycolor",
        "visual_commonsense",
        "memorycolor",
        "data/memory_color/memory_color_data.csv",
        "The color of {object} is?",
        candidates=COLOURS,
        paraphrases=COLOUR_PARAPHRASES,
    )
)
register(
    TaskSpec(
        "colorterms",
        "visual_commonsense",
        "colorterms",
        "data/color_terms/color-concrete-objects.csv",
        "The color of {object} is?",
        candidates=COLOURS,
        paraphrases=COLOUR_PARAPHRASES,
    )
)
register(
    TaskSpec(
        "relativesize",
        "visual_commonsense",
        "relativesize",
        "data/relative_size/sizePairsFull.txt",
        "Is {item1} larger than {item2}?",
        candidates=("Yes", "No"),
        report_yes_rate=True,
        paraphrases=SIZE_PARAPHRASES,
    )
)
register(TaskSpec("raven-iq", "raven", "raven_folder", "data/raven_iq", builder="raven", few_shot=False))
