"""Importing a Kosmos-2 checkpoint in Hugging Face format: a tiny random Kosmos2Config saved with
save_pretrained is the reference (offline); xmt's logits and greedy tokens must equal transformers'."""

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from toolkit.cli import main
from toolkit.data.format import IMAGE, build_sequence
from toolkit.eval.runner import load_checkpoint
from toolkit.model.generation import banned_ids, greedy_search

WORDS = (
    "what color is this ? a an the image of it red green blue yellow black white big small thing answer "
    "question : . , is there one two ball cube"
).split()
LATENTS = 8


def _tokenizer_json(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<image>", "</image>"]
    patches = [f"<patch_index_{i:04d}>" for i in range(4)]
    vocab = {t: i for i, t in enumerate(specials + list(dict.fromkeys(WORDS)) + patches)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok.add_special_tokens(specials + patches)
    tok.save(str(path))
    return len(vocab)


@pytest.fixture(scope="module")
def kosmos2(tmp_path_factory):
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    hf_dir = tmp_path_factory.mktemp("kosmos2") / "hf"
    hf_dir.mkdir()
    vocab = _tokenizer_json(hf_dir / "tokenizer.json")
    cfg = Kosmos2Config(
        text_config={
            "vocab_size": vocab,
            "embed_dim": 32,
            "layers": 2,
            "attention_heads": 4,
            "ffn_dim": 64,
            "max_position_embeddings": 128,
            "scale_embedding": True,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 28,
            "patch_size": 14,
        },
        latent_query_num=LATENTS,
    )
    torch.manual_seed(0)
    hf = Kosmos2ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # random LayerNorm affines, so a wrong mapping of any of them shows
        for name, p in hf.named_parameters():
            if "norm" in name or "ln" in name:
                p.add_(torch.randn_like(p) * 0.2)
    hf.save_pretrained(hf_dir)
    run = hf_dir.parent / "run"
    result = CliRunner().invoke(main, ["import", "kosmos2", str(hf_dir), "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "image placeholder token <patch_index_0003>" in result.output
    return hf, run


def _image_prompt(model, words):
    tok = model.cfg.tokens
    ids = build_sequence([IMAGE, words], tok, model.num_image_tokens, eos=False)
    return torch.tensor([ids])


def test_logits_equal_transformers_text_only_and_with_an_image(kosmos2):
    hf, run = kosmos2
    loaded = load_checkpoint(run)
    model, tok = loaded.adapter.model.eval(), loaded.adapter.tok
    words = tok.encode("what color is this ? a red ball")
    text = torch.tensor([[model.cfg.tokens.bos, *words]])
    with torch.no_grad():
        ours = model(text).logits
        theirs = hf.text_model(input_ids=text, attention_mask=torch.ones_like(text)).logits  # the port needs pixels
    assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= 1e-4

    ids = _image_prompt(model, words)
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    positions = (ids == model.cfg.tokens.image_pad).long()
    assert int(positions.sum()) == LATENTS
    with torch.no_grad():
        ours = model(ids, images=pixels).logits
        theirs = hf(
            input_ids=ids,
            pixel_values=pixels,
            image_embeds_position_mask=positions,
            attention_mask=torch.ones_like(ids),
        ).logits
    assert (ours - theirs).abs().max() <= 1e-4
    # The image path on its own (tower, post-LN, L2 norm, connector): its effect on these random-init
    # logits is small, so the 64 image embeddings are compared directly too.
    with torch.no_grad():
        ours_img = model.embed_images(pixels)
        theirs_img = hf.get_image_features(pixel_values=pixels, return_dict=True).pooler_output
        other_img = model.embed_images(torch.zeros_like(pixels))
    assert ours_img.shape == theirs_img.shape == (1, LATENTS, 32)
    assert (ours_img - theirs_img).abs().max() <= 1e-5 * theirs_img.abs().max()
    assert (other_img - ours_img).abs().max() > 1e-2 * ours_img.abs().max()  # the picture matters


def test_greedy_generation_gives_the_same_tokens(kosmos2):
    hf, run = kosmos2
    model = load_checkpoint(run).adapter.model.eval()
    t = model.cfg.tokens
    ids = _image_prompt(model, [t.bos + 10, t.bos + 11])
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    ours = greedy_search(model, ids, pixels, max_new_tokens=8)[0]
    out = hf.generate(
        input_ids=ids,
        pixel_values=pixels,
        image_embeds_position_mask=(ids == t.image_pad).long(),
        attention_mask=torch.ones_like(ids),
        max_new_tokens=8,
        do_sample=False,
        eos_token_id=t.eos,
        bad_words_ids=[[b] for b in banned_ids(model)],
        num_beams=1,
    )
    theirs = out[0, ids.shape[1] :].tolist() if out.shape[1] > 8 else out[0].tolist()
    theirs = theirs[: theirs.index(t.eos)] if t.eos in theirs else theirs
    assert ours == theirs and len(ours) > 0


def test_full_size_parameter_count_matches_transformers_on_the_meta_device():
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    from toolkit.importers.kosmos2 import model_config
    from toolkit.model.build import build_model, parameter_counts
    from toolkit.model.config import SpecialTokens

    hf_cfg = Kosmos2Config()  # transformers' defaults are microsoft/kosmos-2-patch14-224's shape
    with torch.device("meta"):
        hf = Kosmos2ForConditionalGeneration(hf_cfg)
        ours = build_model(model_config(hf_cfg.to_dict(), SpecialTokens(image=64003, image_end=64004)), init=False)
    hf_text = sum(p.numel() for p in hf.text_model.parameters())  # lm_head is tied: counted once
    counts = parameter_counts(ours)
    assert counts["language_model_params"] == hf_text
    assert round(hf_text / 1e9, 3) == 1.342
    assert counts["vision_params"] == sum(p.numel() for p in hf.vision_model.parameters())
    assert counts["resampler_params"] == sum(p.numel() for p in hf.image_to_text_projection.parameters())


def test_not_a_kosmos2_directory_names_what_is_missing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["import", "kosmos2", str(empty), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "no config.json" in result.output
    (empty / "config.json").write_text(json.dumps({"model_type": "clip"}))
    result = CliRunner().invoke(main, ["import", "kosmos2", str(empty), "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "model_type is 'clip', not 'kosmos-2'" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_xmt_eval_and_analysis_run_on_the_imported_model(kosmos2, small_world, tmp_path, monkeypatch):
    _, run = kosmos2
    vqa = tmp_path / "vqav2"
    (vqa / "val2014").mkdir(parents=True)
    qs, anns = [], []
    for i in range(1, 4):
        Image.new("RGB", (40, 30), (200, 30 * i, 20)).save(vqa / "val2014" / f"COCO_val2014_{i:012d}.jpg")
        qs.append({"image_id": i, "question": "What color is it?", "question_id": 10 + i})
        anns.append({"question_id": 10 + i, "answers": [{"answer": "red"}] * 10})
    (vqa / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps({"questions": qs}))
    (vqa / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": anns}))
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        main,
        [
            "eval",
            str(run),
            "--world",
            str(small_world),
            "--tasks",
            "world-vqa,world-colour,vqav2",
            "--shots",
            "0,1",
            "--limit",
            "4",
            "--data",
            f"vqav2={vqa}",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    for cell in ("world-vqa", "world-vqa-1shot", "world-colour", "vqav2", "vqav2-1shot"):
        record = json.loads((out / f"{cell}.json").read_text())
        assert record["n"] in (3, 4) and 0 <= record["value"] <= 1, cell
    # the 1-shot VQA prompt holds two images: the demonstration's and the question's
    sample = json.loads((out / "world-vqa-1shot.samples.jsonl").read_text().splitlines()[0])
    assert sample["prompt"].count("<image>") == 2
    attention = CliRunner().invoke(
        main,
        ["analyze", "attention", str(run), "--out", str(tmp_path / "att"), "--limit", "2", "--world", str(small_world)],
    )
    assert attention.exit_code == 0, attention.output
    assert (tmp_path / "att" / "attention_mass.csv").is_file()
    # the attention notebook, pointed at the imported run and a world
    import os
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("XMT_RUN_DIR", str(run))
    monkeypatch.setenv("XMT_WORLD", str(small_world))
    monkeypatch.setenv("XMT_OUT", str(tmp_path / "nb"))
    monkeypatch.setenv("PYTHONPATH", str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(root / "notebooks" / "attention_visualization.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    assert (tmp_path / "nb" / "attention_overlay.png").is_file()
