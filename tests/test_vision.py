import pytest
import torch
from conftest import tiny_config, tiny_model
from transformers import CLIPVisionConfig, CLIPVisionModel

from toolkit.model import build_model
from toolkit.model.vision import VISION, apply_freeze
from toolkit.registry import UnknownNameError

HF_CLIP = dict(
    hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, image_size=16, patch_size=8
)


@pytest.fixture
def clip_dir(tmp_path):
    torch.manual_seed(11)
    reference = CLIPVisionModel(CLIPVisionConfig(**HF_CLIP)).eval()
    reference.save_pretrained(tmp_path / "clip")
    return tmp_path / "clip", reference


def test_clip_from_a_local_directory_gives_identical_features(clip_dir):
    path, reference = clip_dir
    model = tiny_model(vision={"kind": "clip", "path": str(path), "freeze": "all_but_last"})
    # The shape comes from the directory, not from the config's defaults.
    assert model.vision.out_dim == 24 and model.vision.num_tokens == 5
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = reference(pixel_values=pixels).last_hidden_state
        got = model.vision(pixels)
    assert torch.equal(got, want)
    # And the image embeddings flow into the decoder from those features.
    assert model.embed_images(pixels).shape == (2, model.num_image_tokens, 32)


def test_freeze_all_but_last_leaves_exactly_the_last_layer_trainable(clip_dir):
    path, _ = clip_dir
    model = tiny_model(vision={"kind": "clip", "path": str(path), "freeze": "all_but_last"})
    trainable = {n for n, p in model.vision.model.named_parameters() if p.requires_grad}
    last = {f"encoder.layers.2.{n}" for n, _ in model.vision.last_layer().named_parameters()}
    assert trainable == last and len(last) > 0
    # Decoder and resampler stay trainable; the rest of the tower is frozen.
    assert all(p.requires_grad for p in model.decoder.parameters())
    assert all(p.requires_grad for p in model.resampler.parameters())
    counts = apply_freeze(model.vision, "all")
    assert counts["trainable"] == 0
    counts = apply_freeze(model.vision, "none")
    assert counts["frozen"] == 0 and counts["trainable"] == sum(p.numel() for p in model.vision.parameters())


def test_random_clip_follows_the_config_shape():
    model = tiny_model(vision={"kind": "clip"})
    hf = model.vision.model.config
    assert (hf.hidden_size, hf.num_hidden_layers, hf.image_size, hf.patch_size) == (16, 1, 16, 8)
    assert model.vision.num_tokens == 4 + 1  # patches + CLS


def test_small_vit_features_and_resampler_variants():
    for kind, tokens in [("attentive", 3), ("linear", 4), ("mean", 3)]:
        model = tiny_model(resampler={"kind": kind})
        assert model.num_image_tokens == tokens
        assert model.embed_images(torch.randn(2, 3, 16, 16)).shape == (2, tokens, 32)


def test_mean_resampler_averages_groups_of_tokens():
    model = tiny_model(resampler={"kind": "mean", "num_latents": 2})
    feats = torch.arange(4 * 16, dtype=torch.float32).view(1, 4, 16)
    with torch.no_grad():
        got = model.resampler(feats)
        want = model.resampler.dense(torch.stack([feats[0, :2].mean(0), feats[0, 2:].mean(0)])[None])
    torch.testing.assert_close(got, want)


def test_attentive_resampler_latents_attend_over_features_and_latents():
    model = tiny_model()
    r = model.resampler
    feats = torch.randn(2, 4, 16)
    with torch.no_grad():
        x = r.dense(feats)
        lat = r.latent_query[None].expand(2, -1, -1)
        kv = torch.cat([x, lat], 1)
        attn = r.x_attn
        q = attn.q_proj(lat).view(2, 3, 4, 8).transpose(1, 2) * 8**-0.5
        k = attn.k_proj(kv).view(2, 7, 4, 8).transpose(1, 2)
        v = attn.v_proj(kv).view(2, 7, 4, 8).transpose(1, 2)
        w = torch.softmax(q @ k.transpose(-1, -2), -1)
        want = attn.out_proj((w @ v).transpose(1, 2).reshape(2, 3, 32))
        got = r(feats)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_clip_path_errors_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        build_model(tiny_config(vision={"kind": "clip", "path": str(tmp_path)}))


def test_unknown_vision_and_resampler_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="available: clip, vit, none"):
        build_model(tiny_config(vision={"kind": "siglip"}))
    with pytest.raises(UnknownNameError, match="available: attentive, linear, mean"):
        build_model(tiny_config(resampler={"kind": "qformer"}))
    assert sorted(VISION) == ["clip", "vit"]


def test_attentive_resampler_matches_the_kosmos2_connector_with_mapped_weights():
    from transformers import Kosmos2Config
    from transformers.models.kosmos2.modeling_kosmos2 import Kosmos2ImageToTextProjection

    hf_cfg = Kosmos2Config(
        text_config=dict(embed_dim=32, attention_heads=4, layers=1, ffn_dim=64, vocab_size=64),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=16,
            patch_size=8,
        ),
        latent_query_num=3,
    )
    torch.manual_seed(4)
    reference = Kosmos2ImageToTextProjection(hf_cfg).eval()
    model = tiny_model()
    model.resampler.load_state_dict(reference.state_dict(), strict=True)
    feats = torch.randn(2, 5, 16)
    with torch.no_grad():
        want = reference(feats)[0]
        got = model.resampler(feats)
    assert (got - want).abs().max() <= 1e-6


def test_conv_stem_gives_the_patch_grid_from_stride_2_convolutions():
    from toolkit.config import ConfigError
    from toolkit.model.config import VisionConfig

    cfg = VisionConfig(kind="vit", image_size=32, patch_size=8, width=64, layers=1, heads=4, mlp_dim=64, stem="conv")
    tower = VISION.get("vit")(cfg)
    convs = [m for m in tower.patch_embed if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)] and convs[-1].out_channels == 64
    tower.init_weights()
    assert tower(torch.randn(3, 3, 32, 32)).shape == (3, 16, 64)  # the same 4x4 grid as patch 8
    # Local: a corner pixel reaches only the tokens of the 2x2 corner (receptive field 15 px), before attention.
    x = torch.zeros(1, 3, 32, 32)
    y = x.clone()
    y[0, :, 2, 2] = 1.0
    diff = (tower.patch_embed(y) - tower.patch_embed(x)).abs().sum(1)[0]
    assert diff[0, 0] > 0 and diff[2:, :].sum() == 0 and diff[:, 2:].sum() == 0
    # layers: 0 is a convolutional tower (the stem, then the final LayerNorm); its last layer is the stem.
    cnn = VISION.get("vit")(VisionConfig(kind="vit", image_size=32, patch_size=8, width=64, layers=0, stem="conv"))
    cnn.init_weights()
    assert cnn(torch.randn(2, 3, 32, 32)).shape == (2, 16, 64) and cnn.last_layer() is cnn.patch_embed
    apply_freeze(cnn, "all_but_last")
    assert all(p.requires_grad for p in cnn.patch_embed.parameters())
    assert not any(p.requires_grad for p in cnn.ln_post.parameters())
    with pytest.raises(ConfigError, match="vision.stem=conv needs a power-of-2 vision.patch_size, not 6"):
        VisionConfig(kind="vit", image_size=36, patch_size=6, stem="conv")
    with pytest.raises(ConfigError, match="vision.stem"):
        VisionConfig(kind="vit", stem="resnet")
