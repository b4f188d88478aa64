"""Hugging Face families (toolkit.families) against the models' own forward and generate, on tiny
random checkpoints written here with save_pretrained."""

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from toolkit.cli import main
from toolkit.config import ConfigError
from toolkit.families import detect_family, is_hf_dir, load_family


def picture(seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8"))


def prompts(family):
    text = [
        ["The color of the lemon is?"],
        ["Question: what is this? Answer:"],
        ["Is the tiger larger than the mouse?"],
    ]
    if family == "causal_lm":
        return text
    images = [
        [picture(0), "Question: what is this? Answer:"],
        ["A photo of", picture(1), " a red apple . Then", picture(2)],
    ]
    if family == "qwen2_vl":  # dynamic resolution: an image of another shape gets another patch grid
        images.append([Image.fromarray(np.zeros((40, 24, 3), dtype="uint8")), "what is this?"])
    if family == "paligemma":  # its images open the prompt; text before an image is an error (tested below)
        return [[picture(0), "Question: what is this? Answer:"], [picture(1), picture(2), " a red apple ."]] + text
    if family == "idefics3":  # a wide image is split into 1 x 2 tiles (the square ones into 2 x 2)
        images.append([Image.fromarray(np.full((32, 64, 3), 90, dtype="uint8")), "what is this?"])
    return images + text


def qwen_inputs(adapter, text, images):
    """The Qwen2-VL processor's rule, from its image processor: the i-th `<|image_pad|>` repeated
    grid_t * grid_h * grid_w / 4 times (2x2 merge), token types 1 on image tokens."""
    enc = {}
    if images:
        enc = dict(adapter.images(images=images, return_tensors="pt"))
        grids = iter(enc["image_grid_thw"].prod(-1).tolist())
        text = re.sub(r"<\|image_pad\|>", lambda m: m.group(0) * (next(grids) // 4), text)
    enc["input_ids"] = adapter.tok([text], return_tensors="pt", add_special_tokens=not adapter.chat)["input_ids"]
    enc["mm_token_type_ids"] = (enc["input_ids"] == adapter.model.config.image_token_id).long()
    return enc


def reference_logprob(adapter, parts, continuation):
    """The family's own forward on one unpadded prompt: the processor (or tokenizer) on the text,
    the continuation as the tail of the whole text's tokens."""
    text = adapter.prompt_text(parts)
    images = [p for p in parts if isinstance(p, Image.Image)]
    if adapter.family == "paligemma":
        return paligemma_logprob(adapter, parts, continuation)
    if adapter.family == "qwen2_vl":
        enc = qwen_inputs(adapter, text, images)
    elif adapter.processor is not None:
        enc = adapter.processor(
            text=[text], images=images or None, return_tensors="pt", add_special_tokens=not adapter.chat
        )
    else:
        enc = adapter.tok([text], return_tensors="pt", add_special_tokens=not adapter.chat)
    head = adapter.tok(text, add_special_tokens=False)["input_ids"]
    cont = adapter.tok(text + " " + continuation, add_special_tokens=False)["input_ids"][len(head) :]
    ids = torch.cat([enc["input_ids"], torch.tensor([cont])], dim=1)
    extra = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    if "mm_token_type_ids" in extra:  # the continuation is text
        extra["mm_token_type_ids"] = torch.cat(
            [extra["mm_token_type_ids"], torch.zeros((1, len(cont)), dtype=torch.long)], 1
        )
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, **extra).logits[0].float()
    lp = torch.log_softmax(logits, -1)[enc["input_ids"].shape[1] - 1 : -1]
    return float(lp.gather(-1, torch.tensor(cont)[:, None]).sum())


def paligemma_logprob(adapter, parts, continuation):
    """PaliGemma's layout by hand: 16 image tokens per image, <bos>, the text, a newline (token type 0,
    the bidirectional prefix), then the answer without a leading space (token type 1, causal)."""
    images = [p for p in parts if isinstance(p, Image.Image)]
    text = "".join(p for p in parts if isinstance(p, str))
    tok, image_id = adapter.tok, adapter.model.config.image_token_id
    prefix = (
        [image_id] * 16 * len(images) + [tok.bos_token_id] + tok(text + "\n", add_special_tokens=False)["input_ids"]
    )
    head = tok(text + "\n", add_special_tokens=False)["input_ids"]
    cont = tok(text + "\n" + continuation, add_special_tokens=False)["input_ids"][len(head) :]
    ids = torch.tensor([prefix + cont])
    types = torch.tensor([[0] * len(prefix) + [1] * len(cont)])
    extra = {}
    if images:
        extra["pixel_values"] = adapter.processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = adapter.model(input_ids=ids, token_type_ids=types, **extra).logits[0].float()
    lp = torch.log_softmax(logits, -1)[len(prefix) - 1 : -1]
    return float(lp.gather(-1, torch.tensor(cont)[:, None]).sum())


@pytest.mark.parametrize(
    "name",
    [
        "causal_lm",
        "llava",
        "llava-chat",
        "qwen2_vl",
        "qwen2_5_vl",
        "qwen2_vl-chat",
        "idefics3",
        "idefics3-chat",
        "paligemma",
    ],
)
def test_loglikelihoods_equal_the_models_own_forward(hf_dirs, name):
    adapter = load_family(hf_dirs[name], batch_size=3)  # batches mix lengths and image counts
    base = name.split("-")[0]
    assert adapter.family == {"qwen2_5_vl": "qwen2_vl"}.get(base, base) and adapter.chat == name.endswith("chat")
    if adapter.chat:  # the directory's chat template frames the prompt, images where the prompt has them
        text = adapter.prompt_text(["A photo of", picture(0), " what?"])
        assert text.lower().startswith("user: a photo of") and text.lower().endswith("assistant:")
    requests = [(p, c) for p in prompts(adapter.family) for c in ("yellow", "a red apple", "Yes")]
    scores = adapter.rank(requests)
    for (parts, cont), score in zip(requests, scores):
        assert abs(score.logprob - reference_logprob(adapter, parts, cont)) <= 1e-4, (parts, cont)


@pytest.mark.parametrize("name", ["causal_lm", "llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def test_generation_equals_greedy_generate_and_states_the_hidden_states(hf_dirs, name):
    adapter = load_family(hf_dirs[name], batch_size=4)
    batch = prompts(adapter.family)
    outputs = adapter.generate(batch, max_new_tokens=5)
    states = adapter.states(batch)
    config = adapter.text_config()
    assert states.shape == (len(batch), config.num_hidden_layers + 1, config.hidden_size)
    for parts, output, state in zip(batch, outputs, states):
        context = adapter.context(parts)
        ids = torch.tensor([context.input_ids])
        inputs = {**context.tensors, **{k: torch.tensor([v]) for k, v in context.per_token.items()}}
        with torch.no_grad():
            tokens = adapter.model.generate(
                input_ids=ids, **inputs, max_new_tokens=5, do_sample=False, pad_token_id=adapter.pad
            )[0, ids.shape[1] :].tolist()
            hidden = adapter.model(input_ids=ids, **inputs, output_hidden_states=True).hidden_states
        eos = adapter.tok.eos_token_id
        tokens = tokens[: tokens.index(eos)] if eos in tokens else tokens
        assert output == adapter.tok.decode(tokens, skip_special_tokens=True)
        assert torch.allclose(state, torch.stack([h[0, -1] for h in hidden]), atol=1e-5)
    constrained = adapter.generate(batch, max_new_tokens=10, candidates=["yellow", "red apple"])
    assert all(o.strip() in ("yellow", "red apple") for o in constrained), constrained


def test_families_are_detected_from_config_json_and_refuse_what_they_cannot_do(hf_dirs, tmp_path):
    assert detect_family(hf_dirs["llava"]) == "llava" and detect_family(hf_dirs["causal_lm"]) == "causal_lm"
    assert is_hf_dir(hf_dirs["llava"]) and not is_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    with pytest.raises(ConfigError, match=r"model_type 'blip-2' is not a supported family; supported: .*llava"):
        detect_family(tmp_path)
    text_only = load_family(hf_dirs["causal_lm"])
    with pytest.raises(ConfigError, match=r"a causal_lm model reads text only"):
        text_only.rank([([picture(0), "what is this?"], "a cat")])
    families = {name: detect_family(path) for name, path in hf_dirs.items()}
    assert families["idefics3"] == "idefics3" and families["paligemma"] == "paligemma"
    paligemma = load_family(hf_dirs["paligemma"])
    with pytest.raises(ConfigError, match=r"a paligemma model reads its images before the prompt's text"):
        paligemma.rank([(["A photo of", picture(0), "what is this?"], "a cat")])


def test_xmt_eval_reads_a_hugging_face_directory(hf_dirs, small_world, tmp_path):
    for name in ("llava", "qwen2_vl", "idefics3", "paligemma", "causal_lm"):
        out = tmp_path / name
        args = ["eval", str(hf_dirs[name]), "--world", str(small_world), "--tasks", "world-colour,world-vqa"]
        result = CliRunner().invoke(main, [*args, "--limit", "4", "--out", str(out)])
        assert result.exit_code == 0, result.output
        colour = json.loads((out / "world-colour.json").read_text())
        assert colour["n"] == 4 and 0.0 <= colour["value"] <= 1.0
        assert (out / "world-vqa.json").is_file() == (name != "causal_lm")  # the text-only model skips image tasks
    result = CliRunner().invoke(main, ["eval", str(tmp_path), "--world", str(small_world)])
    assert result.exit_code != 0


@pytest.mark.parametrize("name", ["causal_lm", "llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def test_hook_points_fire_with_the_documented_shapes_and_intervene(hf_dirs, name):
    adapter = load_family(hf_dirs[name])
    parts = prompts(adapter.family)[0]
    config = adapter.text_config()
    last = config.num_hidden_layers - 1
    names = ["embeds", "layers.0.attn_out", "layers.0.mlp_out", "layers.0.resid_post", f"layers.{last}.resid_post"]
    context, cache = adapter.run_with_cache(parts, names)
    for n in names:
        assert cache[n].shape == (1, len(context.input_ids), config.hidden_size), n
    # a pre-norm block adds its attention and MLP outputs to the stream
    summed = cache["embeds"] + cache["layers.0.attn_out"] + cache["layers.0.mlp_out"]
    assert torch.allclose(cache["layers.0.resid_post"], summed, atol=1e-5)
    batch = adapter.collate([context], [context.input_ids])
    with torch.no_grad():
        hidden = adapter.model(**batch, output_hidden_states=True).hidden_states
        assert torch.allclose(cache["embeds"], hidden[0].float(), atol=1e-6)
        from toolkit.families.hooks import hooks

        with hooks(adapter.model, {"layers.0.mlp_out": torch.zeros_like}):  # an intervention changes the output
            ablated = adapter.model(**batch).logits
        assert not torch.allclose(ablated, adapter.model(**batch).logits)
    with pytest.raises(KeyError, match="unknown hook point"):
        adapter.run_with_cache(parts, ["layers.99.mlp_out"])


@pytest.mark.parametrize("name", ["llava", "qwen2_vl", "qwen2_5_vl", "idefics3"])
def test_attention_maps_land_on_each_images_patch_grid(hf_dirs, name):
    adapter = load_family(hf_dirs[name], attention="eager")
    tall = Image.fromarray(np.zeros((40, 24, 3), dtype="uint8"))  # 40 x 24 pixels: rows > cols for Qwen2-VL
    context, weights = adapter.attention(["A photo of", picture(1), " and", tall, " what?"])
    config = adapter.text_config()
    n = len(context.input_ids)
    assert weights.shape == (config.num_hidden_layers, config.num_attention_heads, n, n)
    assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-4)
    spans = adapter.image_spans(context)
    grids = [(s.rows, s.cols) for s in spans]
    assert (
        grids
        == {  # patch 8 | 4 px merged 2x2 | tiles of 2 x 2 tokens side by side, then the global view
            "llava": [(4, 4), (4, 4)],
            "qwen2_vl": [(4, 4), (5, 3)],
            "qwen2_5_vl": [(4, 4), (5, 3)],
            "idefics3": [(4, 4), (2, 2), (4, 4), (2, 2)],  # 40 x 24 px is resized to 64 x 64 before the split
        }[name]
    )
    for span in spans:  # a planted spike on patch (r, c) comes back at (r, c)
        for r, c in ((0, 0), (span.rows - 1, span.cols - 1), (span.rows // 2, 1)):
            planted = torch.zeros(n)
            planted[span.positions[r * span.cols + c]] = 1.0
            assert divmod(int(span.grid(planted).argmax()), span.cols) == (r, c)
    assert span.grid(weights[:, :, -1]).shape == (
        config.num_hidden_layers,
        config.num_attention_heads,
        span.rows,
        span.cols,
    )


@pytest.mark.parametrize("name", ["causal_lm", "llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def test_attribution_over_patches_and_tokens_is_complete(hf_dirs, name):
    from toolkit.families.attribution import attribute

    adapter = load_family(hf_dirs[name])
    parts = prompts(adapter.family)[0]
    result = attribute(adapter, parts, "a red apple", n_steps=64)
    total = float(result.text.sum()) + sum(float(p.sum()) for p in result.patches)
    assert (
        abs(total - (result.output - result.baseline_output))
        <= 0.02 * abs(result.output - result.baseline_output) + 1e-3
    )
    assert abs(result.delta) <= 0.02 * abs(result.output - result.baseline_output) + 1e-3
    assert result.output == pytest.approx(adapter.rank([(parts, "a red apple")])[0].logprob, abs=1e-4)
    context = adapter.context(parts)
    assert len(result.tokens) == len(context.input_ids) == len(result.text)
    spans = adapter.image_spans(context)
    # 32 px: CLIP patches of 8 | Qwen2-VL patches of 4, unmerged | Idefics3: 2 x 2 tiles of 4 x 4 patches
    # side by side, then the global view
    pixels = {"llava": [(4, 4)], "qwen2_vl": [(8, 8)], "qwen2_5_vl": [(8, 8)], "idefics3": [(8, 8), (4, 4)]}
    pixels = {**pixels, "paligemma": [(4, 4)]}.get(name, [])
    assert [tuple(p.shape) for p in result.patches] == pixels
    assert len(spans) == len(pixels)
    assert sum(result.shares.values()) == pytest.approx(1.0)


def test_xmt_analyze_attention_reads_a_hugging_face_directory(hf_dirs, small_world, tmp_path):
    import pandas as pd

    from analysis.common import world_vqa_examples
    from toolkit.eval.prompts import fill
    from toolkit.eval.tasks import TASKS

    first = world_vqa_examples(small_world, 1)[0]
    for name in ("llava", "qwen2_vl", "idefics3"):
        out = tmp_path / name
        args = ["analyze", "attention", str(hf_dirs[name]), "--world", str(small_world), "--limit", "1"]
        result = CliRunner().invoke(main, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        mass = pd.read_csv(out / "attention_mass.csv")
        # by hand: each text token after the image, its attention summed over the image's tokens,
        # averaged over those tokens
        adapter = load_family(hf_dirs[name], attention="eager")
        context, weights = adapter.attention(fill(TASKS.get("world-vqa").prompt, first))
        span = adapter.image_spans(context)[0]
        image = torch.tensor(context.input_ids) == adapter.image_token_id
        queries = [q for q in range(span.start, len(image)) if not image[q]]
        expected = weights[:, :, queries][..., image].sum(-1).mean(-1)  # (layers, heads)
        got = mass.pivot(index="layer", columns="head", values="text_to_image_mass").to_numpy()
        assert np.allclose(got, expected.numpy(), atol=1e-5)
        maps = np.load(out / "attention_overlays.npz")["maps"]  # (examples, layers, rows, cols)
        assert maps.shape == (1, len(weights), span.rows, span.cols)
        assert np.allclose(maps[0, -1], span.grid(weights[-1].mean(0)[-1]).numpy(), atol=1e-6)


def test_xmt_analyze_probe_and_attribute_read_a_hugging_face_directory(hf_dirs, small_world, tmp_path):
    import pandas as pd

    from analysis.probing import features

    for name in ("causal_lm", "llava", "qwen2_vl"):
        adapter = load_family(hf_dirs[name])
        cats, text_rows, image_rows = features(hf_dirs[name], images_per_category=1, world=small_world)
        assert len(text_rows) == 3 * len(cats) and bool(image_rows) == (name != "causal_lm")
        # a text row is the plain phrase's residual stream at its last token, layer by layer
        enc = adapter.tok(["the " + text_rows[0]["category"]], return_tensors="pt")
        with torch.no_grad():
            hidden = adapter.model(**enc, output_hidden_states=True).hidden_states
        expected = np.stack([h[0, -1].numpy() for h in hidden])
        assert np.allclose(np.stack(text_rows[0]["states"]), expected, atol=1e-5)
        if image_rows:  # an image row is the mean over the image's tokens
            image = Image.open(next((small_world / "eval").glob("**/*.png"))).convert("RGB")
            with adapter.plain():
                context = adapter.context([image])
            span = adapter.image_spans(context)[0]
            batch = adapter.collate([context], [context.input_ids])
            with torch.no_grad():
                hidden = adapter.model(**batch, output_hidden_states=True).hidden_states
            tokens = list(span.positions)
            states = adapter.image_states([image])[0]
            assert np.allclose(states.numpy(), np.stack([h[0, tokens].mean(0).numpy() for h in hidden]), atol=1e-5)
    out = tmp_path / "probe"
    result = CliRunner().invoke(
        main, ["analyze", "probe", str(hf_dirs["llava"]), "--world", str(small_world), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    probing = pd.read_csv(out / "probing.csv")
    assert {"text", "image", "text->image"} <= set(probing["modality"])
    assert probing["layer"].max() == adapter.text_config().num_hidden_layers
    out = tmp_path / "attribute"
    args = ["analyze", "attribute", str(hf_dirs["qwen2_vl"]), "--world", str(small_world), "--limit", "2"]
    result = CliRunner().invoke(main, [*args, "--steps", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shares = pd.read_csv(out / "attribution.csv")
    assert len(shares) == 2 and np.allclose(shares["image_share"] + shares["text_share"], 1.0)
    assert (shares["relative_error"] < 0.05).all()
    result = CliRunner().invoke(main, ["analyze", "attention", str(hf_dirs["causal_lm"]), "--world", str(small_world)])
    assert result.exit_code != 0 and "text-only model has no image attention" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llava", "qwen2_vl"])
def test_the_attention_notebook_runs_on_a_hugging_face_directory(hf_dirs, small_world, name, tmp_path, monkeypatch):
    import os
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("XMT_RUN_DIR", str(hf_dirs[name]))
    monkeypatch.setenv("XMT_WORLD", str(small_world))
    monkeypatch.setenv("XMT_OUT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(root / "notebooks" / "attention_visualization.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(root)}}).execute()
    assert (tmp_path / "attention_overlay.png").is_file() and (tmp_path / "attention_mass.png").is_file()
    mass = nb.cells[-1].outputs[0]["data"]["text/plain"]  # the (layers, heads) mass, printed
    assert mass.startswith("tensor([[") and mass.count("[") == 1 + adapter_layers(hf_dirs[name])


def adapter_layers(path):
    return json.loads((path / "config.json").read_text())["text_config"]["num_hidden_layers"]


def test_idefics3_tiles_and_global_view_land_where_their_pixels_are(hf_dirs):
    """With the tower's attention layers removed, an image token depends on its own patches only: a
    change to one 8 x 8 patch of a 64 x 64 image (2 x 2 tiles of 32 px, no resizing) must move exactly
    the token that `image_spans` puts at that patch's place in the tiles grid (pixel shuffle 2: patch
    (y, x) of tile (r, c) -> token (y // 2, x // 2) of the tile -> (2r + y // 2, 2c + x // 2))."""

    adapter = load_family(hf_dirs["idefics3"])
    adapter.model.model.vision_model.encoder.layers = torch.nn.ModuleList()
    rng = np.random.default_rng(0)
    pixels = (rng.random((64, 64, 3)) * 255).astype("uint8")
    changed = pixels.copy()
    changed[48:56, 24:32] = 255 - changed[48:56, 24:32]  # tile (1, 0), patch (2, 3) -> token (1, 1) -> (3, 1)
    embeds = []
    for image in (pixels, changed):
        context, cache = adapter.run_with_cache(["look:", Image.fromarray(image), " what?"], ["embeds"])
        embeds.append(cache["embeds"][0])
    spans = adapter.image_spans(context)
    assert [(s.view, s.rows, s.cols) for s in spans] == [("tiles", 4, 4), ("global", 2, 2)]
    moved = spans[0].grid((embeds[1] - embeds[0]).abs().sum(-1))
    assert moved[3, 1] > 0 and int((moved > 1e-6).sum()) == 1
    assert torch.equal(embeds[0][: spans[0].start], embeds[1][: spans[0].start])  # the text before is untouched
    wide = adapter.context([Image.fromarray(pixels[:32]), "what?"])  # 32 x 64 px: one row of two tiles
    assert [(s.view, s.rows, s.cols) for s in adapter.image_spans(wide)] == [("tiles", 2, 4), ("global", 2, 2)]
