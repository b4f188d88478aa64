"""Every real benchmark format, written as small fixture files, read and scored end to end."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from toolkit.cli import main
from toolkit.data.shards import SkipLog
from toolkit.eval.examples import LOADERS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"


def _jpg(path: Path, colour=(200, 20, 20)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path, format="JPEG")
    return path


def _jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    d = tmp_path_factory.mktemp("real")
    files = {}
    # COCO Karpathy split json with images under filepath/
    images = []
    for i in range(3):
        _jpg(d / "coco" / "val2014" / f"img{i}.jpg", (50 * i, 80, 120))
        images.append(
            {
                "filepath": "val2014",
                "filename": f"img{i}.jpg",
                "split": "test",
                "cocoid": i,
                "sentences": [{"raw": f"A red thing number {i}."}, {"raw": "Something on a table."}],
            }
        )
    images.append(
        {"filepath": "val2014", "filename": "train.jpg", "split": "train", "cocoid": 9, "sentences": [{"raw": "x"}]}
    )
    (d / "coco" / "dataset_coco.json").write_text(json.dumps({"images": images}))
    files["coco-captioning"] = d / "coco" / "dataset_coco.json"
    # VQAv2: questions + annotations + COCO-named images
    (d / "vqav2").mkdir()
    qs, anns = [], []
    for i in range(1, 4):
        _jpg(d / "vqav2" / "val2014" / f"COCO_val2014_{i:012d}.jpg")
        qs.append({"image_id": i, "question": "What color is it?", "question_id": 10 + i})
        anns.append({"question_id": 10 + i, "answers": [{"answer": "red"}] * 7 + [{"answer": "pink"}] * 3})
    (d / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": qs}))
    (d / "vqav2" / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": anns}))
    files["vqav2"] = d / "vqav2"
    # VizWiz
    recs = []
    for i in range(2):
        _jpg(d / "vizwiz" / "val" / f"VizWiz_val_{i:08d}.jpg")
        recs.append(
            {
                "image": f"VizWiz_val_{i:08d}.jpg",
                "question": "What is this?",
                "answers": [{"answer": "a can", "answer_confidence": "yes"}] * 10,
            }
        )
    (d / "vizwiz" / "val.json").write_text(json.dumps(recs))
    files["vizwiz"] = d / "vizwiz" / "val.json"
    # ImageNet-style folders with labels.txt
    for folder in ("n01", "n02"):
        for j in range(2):
            _jpg(d / "imagenet" / folder / f"{j}.JPEG")
    (d / "imagenet" / "labels.txt").write_text("n01\ttench, Tinca tinca\nn02\tgoldfish\n")
    files["imagenet"] = files["imagenet-constrained"] = d / "imagenet"
    # HatefulMemes
    for i in range(4):
        _jpg(d / "hm" / "img" / f"{i:05d}.png")
    files["hateful-memes"] = _jsonl(
        d / "hm" / "dev.jsonl", [{"id": i, "img": f"img/{i:05d}.png", "label": i % 2, "text": "meme"} for i in range(4)]
    )
    # SST-2
    (d / "sst2").mkdir()
    (d / "sst2" / "dev.tsv").write_text(
        "sentence\tlabel\nit 's a charming journey .\t1\nunfunny and tedious\t0\nbad label\tx\n"
    )
    files["rendered-sst2"] = files["rendered-sst2-cot"] = d / "sst2" / "dev.tsv"
    # language multiple choice, Hugging Face layouts
    files["storycloze"] = _jsonl(
        d / "sc.jsonl",
        [
            {
                "input_sentence_1": "Tom went out.",
                "input_sentence_2": "It rained.",
                "input_sentence_3": "He got wet.",
                "input_sentence_4": "He went home.",
                "sentence_quiz1": "He dried off.",
                "sentence_quiz2": "He flew away.",
                "answer_right_ending": 1,
            }
        ]
        * 2,
    )
    files["hellaswag"] = _jsonl(
        d / "hs.jsonl",
        [
            {
                "activity_label": "Cooking",
                "ctx": "A man cuts onions. He",
                "endings": ["cries.", "flies.", "sings [title] loud.", "sleeps."],
                "label": "0",
            }
        ]
        * 2,
    )
    files["piqa"] = _jsonl(
        d / "piqa.jsonl", [{"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Eat the lid.", "label": 0}] * 2
    )
    files["boolq"] = _jsonl(
        d / "boolq.jsonl", [{"question": "is the sky blue", "passage": "The sky is blue.", "answer": True}] * 2
    )
    files["cb"] = _jsonl(d / "cb.jsonl", [{"premise": "It is raining.", "hypothesis": "It is wet", "label": 0}] * 2)
    files["copa"] = _jsonl(
        d / "copa.jsonl",
        [{"premise": "The man fell.", "choice1": "He slipped.", "choice2": "He won.", "question": "cause", "label": 0}]
        * 2,
    )
    files["winogrande"] = _jsonl(
        d / "wg.jsonl",
        [
            {
                "sentence": "The cup fit in the bag because _ was small.",
                "option1": "the cup",
                "option2": "the bag",
                "answer": "1",
            }
        ]
        * 2,
    )
    files["winograd"] = _jsonl(
        d / "wsc.jsonl",
        [
            {
                "text": "The trophy did not fit in the case because it was big.",
                "pronoun": "it",
                "pronoun_loc": 43,
                "options": ["The trophy", "the case"],
                "label": 0,
            }
        ]
        * 2,
    )
    # visual commonsense
    (d / "mc.csv").write_text(
        "Index,Descriptor,Item,Color\r\n1,a ,sunflower,yellow\r\n2,the ,ocean,blue\r\n3,,grass,green\r\n4,,thing,teal\r\n"
    )
    files["memorycolor"] = d / "mc.csv"
    files["colorterms"] = d / "ct.csv"
    (d / "ct.csv").write_text("object,color\nash,grey\nbanana,yellow\n")
    files["relativesize"] = d / "rs.txt"
    (d / "rs.txt").write_text("elephant mouse\nsofa cat\nbroken\n")
    # Raven IQ folder
    for p in range(2):
        for k in range(8):
            _jpg(d / "raven" / f"p{p}" / "context" / f"{k}.png", (k * 20, 0, 0))
        for k in range(6):
            _jpg(d / "raven" / f"p{p}" / "candidates" / f"{k}.png", (0, k * 20, 0))
        (d / "raven" / f"p{p}" / "answer.txt").write_text("3\n")
    files["raven-iq"] = d / "raven"
    return files


EXPECTED_N = {
    "coco-captioning": 3,
    "vqav2": 3,
    "vizwiz": 2,
    "imagenet": 4,
    "imagenet-constrained": 4,
    "hateful-memes": 4,
    "rendered-sst2": 2,
    "rendered-sst2-cot": 2,
    "storycloze": 2,
    "hellaswag": 2,
    "piqa": 2,
    "boolq": 2,
    "cb": 2,
    "copa": 2,
    "winogrande": 2,
    "winograd": 2,
    "memorycolor": 3,
    "colorterms": 2,
    "relativesize": 4,
    "raven-iq": 2,
}


def test_every_real_format_is_read_and_scored_end_to_end(random_run, fixtures, tmp_path):
    args = ["eval", str(random_run), "--tasks", ",".join(EXPECTED_N), "--out", str(tmp_path)]
    for task, path in fixtures.items():
        args += ["--data", f"{task}={path}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    for task, n in EXPECTED_N.items():
        record = json.loads((tmp_path / f"{task}.json").read_text())
        assert record["n"] == n, task
        assert record["value"] >= 0 and (record["metric"] == "cider" or record["value"] <= 1), task
    assert json.loads((tmp_path / "hateful-memes.json").read_text())["metric"] == "roc_auc"
    sst = json.loads((tmp_path / "rendered-sst2.json").read_text())
    assert sst["skipped_records"]["SST-2 row without a 0/1 label"]["count"] == 1
    colour = json.loads((tmp_path / "memorycolor.json").read_text())
    assert colour["skipped_records"]["row without an object or a basic colour"]["count"] == 1
    assert "yes_rate" in json.loads((tmp_path / "relativesize.json").read_text())
    cot = (tmp_path / "rendered-sst2-cot.samples.jsonl").read_text().splitlines()
    assert json.loads(cot[0])["prompt"].count("Question: what is the sentiment of the opinion? Answer:") == 1


def test_loaders_read_the_formats_faithfully(fixtures):
    skips = SkipLog()
    rs = LOADERS.get("relativesize")(fixtures["relativesize"], skips)
    assert [(e.fields["item1"], e.fields["item2"], e.target) for e in rs] == [
        ("elephant", "mouse", "Yes"),
        ("mouse", "elephant", "No"),
        ("sofa", "cat", "Yes"),
        ("cat", "sofa", "No"),
    ]
    assert skips.counts["line is not two objects"] == 1
    mc = LOADERS.get("memorycolor")(fixtures["memorycolor"], SkipLog())
    assert [e.fields["object"] for e in mc] == ["a sunflower", "the ocean", "the grass"]
    inet = LOADERS.get("class_folders")(fixtures["imagenet"], SkipLog())
    assert {e.target for e in inet} == {"tench", "goldfish"} and inet[0].candidates == ["tench", "goldfish"]
    wg = LOADERS.get("winogrande")(fixtures["winogrande"], SkipLog())[0]
    assert wg.fields["options_context"] == [
        "The cup fit in the bag because the cup",
        "The cup fit in the bag because the bag",
    ]
    assert wg.fields["continuation"] == " was small." and wg.target == "the cup"
    assert wg.fields["solved"] == "The cup fit in the bag because the cup was small."  # a few-shot demonstration
    wsc = LOADERS.get("winograd")(fixtures["winograd"], SkipLog())[0]
    assert wsc.fields["options_context"][0] == "The trophy did not fit in the case because the trophy"
    assert wsc.fields["solved"] == "The trophy did not fit in the case because the trophy was big."
    copa = LOADERS.get("copa")(fixtures["copa"], SkipLog())[0]
    assert copa.fields["context"] == "The man fell because" and copa.candidates == ["he slipped.", "he won."]
    raven = LOADERS.get("raven_folder")(fixtures["raven-iq"], SkipLog())[0]
    assert len(raven.images) == 14 and raven.target == "2" and raven.fields["n_context"] == 8
    vqa = LOADERS.get("vqav2")(fixtures["vqav2"], SkipLog())[0]
    assert vqa.answers.count("red") == 7 and vqa.fields["question"] == "What color is it?"


def test_missing_dataset_paths_name_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a Karpathy split json"):
        LOADERS.get("karpathy_captions")(tmp_path / "nope.json", SkipLog())
    (tmp_path / "vq").mkdir()
    with pytest.raises(FileNotFoundError, match=r"expected \*questions\*.json and \*annotations\*.json"):
        LOADERS.get("vqav2")(tmp_path / "vq", SkipLog())
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no valid records"):
        LOADERS.get("relativesize")(tmp_path / "empty.txt", SkipLog())


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/external is not available here")
def test_the_shared_benchmark_files_evaluate_through_xmt_eval(random_run, tmp_path):
    data = {
        "memorycolor": SHARED / "memory_color" / "memory_color_data.csv",
        "colorterms": SHARED / "color_terms" / "color-concrete-objects.csv",
        "relativesize": SHARED / "relative_size" / "sizePairsFull.txt",
        "copa": SHARED / "copa" / "copa-dev.xml",
        "winograd": SHARED / "wsc273" / "WSCollection.xml",
    }
    args = ["eval", str(random_run), "--tasks", ",".join(data), "--out", str(tmp_path)]
    args += [a for task, path in data.items() for a in ("--data", f"{task}={path}")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    n = {task: json.loads((tmp_path / f"{task}.json").read_text())["n"] for task in data}
    assert n == {"memorycolor": 109, "colorterms": 52, "relativesize": 972, "copa": 500, "winograd": 273}
    jsonl = LOADERS.get("memorycolor")(SHARED / "memory_color" / "memory_colors.jsonl", SkipLog())
    csv_rows = LOADERS.get("memorycolor")(SHARED / "memory_color" / "memory_color_data.csv", SkipLog())
    assert len(jsonl) == 109 and [e.fields["object"] for e in jsonl] == [e.fields["object"] for e in csv_rows]
    assert sum(a.target != b.target for a, b in zip(jsonl, csv_rows)) == 1  # pumpkin: orange vs red
