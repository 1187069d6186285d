"""DSH network: the semi-heterogeneous weight sharing, the sketch-token switch, the paper stacks,
and a float16 checkpoint of the pretrained-backbone size under the shipping limit."""

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models import create, load_checkpoint, save_checkpoint
from engine.models.dsh import DSHModel

SMALL = {"image_size": 64, "pretrained": False, "fc1": 32, "fc2": 16, "bits": 32}


def small(**extra) -> DSHModel:
    torch.manual_seed(0)
    return create("dsh", **{**SMALL, **extra})


def test_config_validation_and_default_fc_widths():
    assert create("dsh", backbone="paper", image_size=96, fc1=16, fc2=8).config.fc_widths == (16, 8)
    from engine.models.dsh import DSHConfig

    assert DSHConfig(backbone="paper").fc_widths == (4096, 1024)  # the paper's
    assert DSHConfig().fc_widths == (512, 256)
    with pytest.raises(ConfigError, match="image_size >= 96"):
        DSHConfig(backbone="paper", image_size=64)
    with pytest.raises(ConfigError, match="fc1"):
        DSHConfig(fc1=4)
    with pytest.raises(ConfigError, match="between 64 and 512"):
        DSHConfig(image_size=40)
    with pytest.raises(ConfigError, match="dropout"):
        DSHConfig(dropout=1.0)
    normed = create("dsh", **{**SMALL, "fc_batchnorm": True, "dropout": 0.0})
    kinds = [type(m).__name__ for m in normed.sketch_fc]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 2
    assert normed.sketch_fc[3].p == 0.0


def test_c2_net_is_shared_by_sketches_and_sketch_tokens():
    model = small().eval()
    sketches, photos = torch.rand(3, 1, 64, 64), torch.rand(3, 3, 64, 64)
    edges = model.edge_maps(photos)
    assert edges.shape == (3, 1, 64, 64)
    with torch.no_grad():
        s0, p0 = model.sketch_forward(sketches), model.photo_forward(photos, edges)
        # the training pass (sketches and token maps in one C2 batch) gives the same outputs
        s1, p1 = model.pair_forward(sketches, photos, edges)
        torch.testing.assert_close(s0, s1, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(p0, p1, atol=1e-5, rtol=1e-5)
        # C2's weights move both the sketch codes and the photo codes (through the tokens)
        model.c2.net.conv_stem.weight.mul_(1.5)
        s2, p2 = model.sketch_forward(sketches), model.photo_forward(photos, edges)
        assert not torch.allclose(s0, s2) and not torch.allclose(p0, p2)
        # C1's weights move only the photo codes
        model.c1.net.conv_stem.weight.mul_(1.5)
        s3, p3 = model.sketch_forward(sketches), model.photo_forward(photos, edges)
        torch.testing.assert_close(s2, s3)
        assert not torch.allclose(p2, p3)
    assert model.c1 is not model.c2


def test_sketch_token_switch():
    with_tokens, without = small(), small(sketch_tokens=False)
    photos = torch.rand(2, 3, 64, 64)
    with pytest.raises(ConfigError, match="sketch-token"):
        with_tokens.photo_forward(photos, None)
    assert without.edge_maps(photos) is None and without.token_fc is None
    assert without.photo_forward(photos).shape == (2, 32)
    # the token stream's FC layers are the only difference in parameters
    extra = sum(p.numel() for p in with_tokens.token_fc.parameters())
    extra += with_tokens.photo_hash.weight.numel() - without.photo_hash.weight.numel()
    n = [sum(p.numel() for p in m.parameters()) for m in (with_tokens, without)]
    assert n[0] - n[1] == extra


def test_paper_backbone_streams_and_token_resize():
    torch.manual_seed(0)
    model = create("dsh", backbone="paper", image_size=96, bits=64, fc1=32, fc2=16).eval()
    assert model.c1.layers[0].kernel_size == (11, 11) and model.c1.layers[0].stride == (4, 4)
    assert model.c2.layers[0].kernel_size == (14, 14) and model.c2.layers[0].stride == (3, 3)
    assert model.c2.layers[0].in_channels == 1
    photos = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        out = model.photo_forward(photos, model.edge_maps(photos))
        # token maps of another size are resized to the C2 input size
        resized = model.photo_forward(photos, torch.ones(2, 1, 120, 120))
    assert out.shape == resized.shape == (2, 64)
    codes = model.encode_sketches(np.full((2, 256, 256), 255, np.uint8))
    assert codes.shape == (2, 8)


def test_pretrained_size_checkpoint_ships_under_25_mb_in_float16(tmp_path):
    torch.manual_seed(0)
    model = create("dsh", bits=64, image_size=128, pretrained=False).eval()  # default FC widths
    path = save_checkpoint(model, tmp_path / "dsh.safetensors", weights_dtype="float16")
    assert path.stat().st_size < 25 * 2**20
    loaded = load_checkpoint(path, method="dsh", bits=64)
    photos = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    a, b = loaded.embed_photos(photos), model.embed_photos(photos)
    # float16 weights: the outputs move a little, the codes of clear outputs do not
    clear = np.abs(b) > 0.05
    assert np.array_equal(np.sign(a[clear]), np.sign(b[clear]))
