"""GDH network: the binary attention mask and what it masks, the retrieval paths (sketch through
G_I then H, photo times G_S's mask then H), imagine() at the numpy boundary, config checks."""

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models import create, get_method
from engine.models.gdh import Generator, attention_mask

TINY = {"image_size": 64, "pretrained": False, "gen_channels": 4, "gi_blocks": 1, "gs_blocks": 1}


def tiny(**extra):
    torch.manual_seed(0)
    return create("gdh", **{**TINY, **extra})


def _randomise_attention(gen: Generator) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        gen.attention.weight.normal_(0, 10.0)
        gen.attention.bias.zero_()


def test_attention_mask_is_binary_with_a_straight_through_gradient():
    logits = torch.randn(3, 1, 8, 8, requires_grad=True)
    mask = attention_mask(logits, 0.5)
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    # kept = softmax weight >= 0.5 x uniform, checked position by position
    weights = torch.softmax(logits.detach().flatten(1), dim=1) * 64
    expected = (weights >= 0.5).float().view_as(mask)
    assert torch.equal(mask.detach(), expected)
    assert 0 < expected.mean() < 1
    (mask * torch.randn_like(mask)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_zero_initialised_attention_keeps_the_whole_photo():
    model = tiny()
    photos = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.photo_mask(photos), torch.ones(2, 1, 64, 64))


def test_mask_multiplies_the_resblock_features_before_the_decoder():
    gen = Generator(3, 1, 4, 1, attention=True).eval()
    _randomise_attention(gen)
    seen = {}
    gen.decoder.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    photos = torch.rand(2, 3, 32, 32)
    out, mask = gen(photos)
    features, mask_again = gen.features(photos)
    assert out.shape == (2, 1, 32, 32) and mask.shape == (2, 1, 8, 8)
    assert torch.equal(mask, mask_again)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    decoder_in = seen["x"]
    dropped = (mask == 0).expand_as(decoder_in)
    assert torch.all(decoder_in[dropped] == 0)
    torch.testing.assert_close(decoder_in[~dropped], features[~dropped])
    assert features[dropped].abs().sum() > 0  # they were not zero before the mask


def test_retrieval_paths_follow_the_paper():
    model = tiny().eval()
    _randomise_attention(model.g_s)
    sketches, photos = torch.rand(2, 1, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        fake, _ = model.g_i(sketches)
        torch.testing.assert_close(model.sketch_forward(sketches), model.hash(fake))
        mask = model.photo_mask(photos)
        assert set(mask.unique().tolist()) == {0.0, 1.0} and mask.shape == (2, 1, 64, 64)
        torch.testing.assert_close(model.photo_forward(photos), model.hash(photos * mask))
        assert not torch.allclose(model.photo_forward(photos), model.hash(photos))


def test_without_attention_the_photo_is_hashed_whole():
    model = tiny(attention=False).eval()
    assert model.g_s.attention is None
    photos = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.photo_forward(photos), model.hash(photos))


def test_imagine_returns_g_i_photos_as_uint8_and_keeps_the_mode():
    model = tiny()
    assert get_method("gdh").can_imagine and not get_method("baseline").can_imagine
    sketches = np.full((3, 256, 256), 255, np.uint8)
    for i in range(3):  # a black square at a different place in each
        sketches[i, 40 + 50 * i : 100 + 50 * i, 60:140] = 0
    model.train()
    images = model.imagine(sketches)
    assert images.shape == (3, 64, 64, 3) and images.dtype == np.uint8
    assert model.training
    model.eval()
    again = model.imagine(sketches)
    np.testing.assert_array_equal(images, again)
    with torch.no_grad():
        small = torch.nn.functional.interpolate(
            torch.from_numpy(sketches)[:, None].float() / 255,
            size=(64, 64),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        direct = model.g_i(small)[0].mul(255).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(direct - images.astype(np.float32)).max() <= 1
    assert not np.array_equal(images[0], images[1])  # another sketch, another photo


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"image_size": 72}, "multiple of 16"),
        ({"gen_channels": 2}, "gen_channels"),
        ({"gi_blocks": 0}, "blocks"),
        ({"mask_threshold": 1.5}, "mask_threshold"),
    ],
)
def test_config_refuses_bad_values(options, match):
    with pytest.raises(ConfigError, match=match):
        create("gdh", **{**TINY, **options})


def test_paper_backbone_is_a_resnet18_with_a_k_unit_layer():
    model = tiny(backbone="paper", bits=32)
    assert model.hash_layer.in_features == 512 and model.hash_layer.out_features == 32
    assert model.sketch_forward(torch.rand(2, 1, 64, 64)).shape == (2, 32)


def test_skip_generators_start_as_the_identity_and_learn_a_residual():
    model = tiny(skip=True).eval()
    sketches = (torch.rand(2, 1, 64, 64) > 0.5).float()  # black strokes on white paper
    photos = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        fake, _ = model.g_i(sketches)
        grey, _ = model.g_s(photos)
    gain = torch.tensor(4.0)
    # the sketch repeated to RGB, squashed to sigmoid(+-4) = 0.018 / 0.982
    torch.testing.assert_close(fake, torch.sigmoid(gain * (2 * sketches - 1)).expand(-1, 3, -1, -1))
    torch.testing.assert_close(grey, torch.sigmoid(gain * (2 * photos.mean(1, keepdim=True) - 1)))
    # the residual is trained: the zero-initialised last conv gets a gradient, and a step moves
    # the output away from the identity
    model.train()
    fake, _ = model.g_i(sketches)
    (fake - 0.5).pow(2).mean().backward()
    last = model.g_i.decoder[-1]
    assert last.weight.grad.abs().sum() > 0
    with torch.no_grad():
        last.weight -= 0.1 * last.weight.grad.sign()
    model.eval()
    with torch.no_grad():
        moved, _ = model.g_i(sketches)
    assert (moved - fake.detach()).abs().max() > 1e-3
    # without the skip (the paper) an untrained generator does not reproduce its input
    with torch.no_grad():
        plain, _ = tiny().eval().g_i(sketches)
    assert (plain[:, :1] - sketches).abs().mean() > 0.2


def test_default_configuration_is_the_papers_table_1():
    """256 px, 9 ResBlocks in G_I and 6 in G_S at 128 channels, the attention layer in G_S only,
    and generated images of the input's size."""
    torch.manual_seed(0)
    model = create("gdh", pretrained=False, backbone="paper").eval()
    assert model.photo_size == model.sketch_size == 256
    for gen, blocks in ((model.g_i, 9), (model.g_s, 6)):
        res = [m for m in gen.encoder if m.__class__.__name__ == "ResBlock"]
        assert len(res) == blocks
        assert all(r.body[0].in_channels == r.body[0].out_channels == 128 for r in res)
    assert model.g_i.attention is None and model.g_s.attention.out_channels == 1
    assert not model.g_i.skip and not model.g_s.skip
    with torch.no_grad():
        fake, _ = model.g_i(torch.rand(1, 1, 256, 256))
        grey, mask = model.g_s(torch.rand(1, 3, 256, 256))
    assert fake.shape == (1, 3, 256, 256) and grey.shape == (1, 1, 256, 256)
    assert mask.shape == (1, 1, 64, 64)
