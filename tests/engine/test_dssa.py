"""DSSA network: HOLEF distance against the naive double sum, attention, fusion, ablation flags,
the paper backbone's geometry, and the photo side reading edge maps."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.edges import EDGE_THRESHOLD, edge_maps
from engine.errors import ConfigError
from engine.models import create, load_checkpoint, save_checkpoint
from engine.models.dssa import SpatialAttention, holef_distance, holef_pairwise


def naive_holef(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
    """sum_ij W_ij (x_i - y_j)^2 as written in the paper."""
    total = 0.0
    for i in range(len(x)):
        for j in range(len(y)):
            total += float(w[i, j]) * float(x[i] - y[j]) ** 2
    return total


def small(**cfg):
    torch.manual_seed(0)
    return create("dssa", **{"image_size": 96, "pretrained": False, **cfg})


def test_holef_with_identity_is_squared_euclidean():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    eye = torch.eye(7)
    expected = (x - y).pow(2).sum(dim=1)
    torch.testing.assert_close(holef_distance(x, y, eye), expected)
    torch.testing.assert_close(holef_distance(x, y, None), expected)
    torch.testing.assert_close(
        holef_pairwise(x, y, eye), torch.cdist(x, y).pow(2), atol=1e-5, rtol=0
    )


def test_holef_expanded_square_matches_double_loop():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 4, generator=g), torch.randn(2, 4, generator=g)
    w = torch.eye(4) + 0.3 * torch.randn(4, 4, generator=g)  # not symmetric on purpose
    paired = holef_distance(x[:2], y, w)
    pairwise = holef_pairwise(x, y, w)
    for a in range(2):
        assert float(paired[a]) == pytest.approx(naive_holef(x[a], y[a], w), rel=1e-5)
    for a in range(3):
        for b in range(2):
            assert float(pairwise[a, b]) == pytest.approx(naive_holef(x[a], y[b], w), rel=1e-5)


def test_attention_weights_are_a_softmax_over_locations_and_shortcut_adds_f():
    torch.manual_seed(0)
    f = torch.rand(2, 8, 5, 6)
    with_shortcut, without = SpatialAttention(8, shortcut=True), SpatialAttention(8, shortcut=False)
    without.load_state_dict(with_shortcut.state_dict())
    a = with_shortcut.weights(f)
    assert a.shape == (2, 1, 5, 6) and bool((a > 0).all())
    torch.testing.assert_close(a.sum(dim=(2, 3)), torch.ones(2, 1))
    torch.testing.assert_close(with_shortcut(f), f + a * f)
    torch.testing.assert_close(without(f), a * f)


@pytest.mark.parametrize(
    ("flags", "dim", "has_w", "has_attention"),
    [
        ({}, 512, True, True),
        ({"fusion": False}, 256, True, True),
        ({"holef": False}, 512, False, True),
        ({"attention": False}, 512, True, False),
    ],
)
def test_ablation_flags_shape_the_network(flags, dim, has_w, has_attention):
    model = small(**flags).eval()
    feats = model.features(torch.rand(3, 1, 96, 96))
    assert feats.shape == (3, dim)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(3))
    assert (model.holef_weight is not None) == has_w
    assert (model.attention is not None) == has_attention
    if has_w:
        torch.testing.assert_close(model.holef_weight, torch.eye(dim))
    assert model.sketch_forward(torch.rand(3, 1, 96, 96)).shape == (3, 64)


def test_paper_backbone_has_sketch_a_net_geometry():
    model = small(backbone="paper", image_size=225).eval()
    conv5 = model.backbone(torch.rand(1, 1, 225, 225))
    assert conv5.shape == (1, 256, 15, 15)  # 225 -> conv1 71 -> 35 -> conv2 31 -> 15
    assert model.pool5(conv5).shape == (1, 256, 7, 7)
    assert model.fc[0].in_features == 256 * 7 * 7 and model.fc[-1].out_features == 256
    out = model.sketch_forward(torch.rand(2, 1, 225, 225))
    assert out.shape == (2, 64)


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="multiple of 32"):
        create("dssa", image_size=225, pretrained=False)
    with pytest.raises(ConfigError, match="dropout"):
        create("dssa", dropout=1.0, pretrained=False)
    with pytest.raises(ConfigError, match="between 96 and 512"):
        create("dssa", backbone="paper", image_size=64)
    with pytest.raises(ConfigError, match="edge_threshold"):
        create("dssa", edge_threshold=0.0, pretrained=False)


def test_edge_threshold_is_the_engines_by_default_and_sets_the_models_edges(shared_data):
    """Checkpoints saved before ``edge_threshold`` existed keep the engine's edges; a model with
    its own threshold draws its photos from those edges, in search as in training."""
    photo = Image.open(shared_data / "shoes_v1/photos/1.jpg").convert("RGB").resize((96, 96))
    batch = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 255.0
    default, loose = small(), small(edge_threshold=0.2)
    assert default.config.edge_threshold == EDGE_THRESHOLD
    assert torch.equal(default.raw_edge_maps(batch), edge_maps(batch))
    assert torch.equal(loose.raw_edge_maps(batch), edge_maps(batch, threshold=0.2))
    assert (loose.raw_edge_maps(batch) < 0.5).sum() > (default.raw_edge_maps(batch) < 0.5).sum()
    assert not torch.equal(loose.edge_maps(batch), default.edge_maps(batch))


def _edge_maps(n: int, size: int) -> np.ndarray:
    """uint8 (n, size, size) thin dark rectangles on white, one per map, of different sizes."""
    maps = np.full((n, size, size), 255, np.uint8)
    for i in range(n):
        lo, hi = 10 + 5 * i, size - 20
        maps[i, lo, lo:hi] = maps[i, hi, lo:hi] = maps[i, lo:hi, lo] = maps[i, lo:hi, hi] = 0
    return maps


def test_edge_maps_are_drawn_like_sketches():
    model, raw = small(), _edge_maps(2, 96)
    canonical = model.canonical_edges(raw)
    assert canonical.shape == (2, 96, 96) and canonical.dtype == np.uint8
    # framed like a canonical sketch: both rectangles now span the same box, with thicker lines
    np.testing.assert_allclose(canonical[0], canonical[1], atol=40)
    assert (canonical < 128).sum() > (raw[0] < 128).sum()
    blank = model.canonical_edges(np.full((1, 96, 96), 255, np.uint8))
    assert (blank == 255).all()  # no edge: blank paper, not an error
    np.testing.assert_array_equal(small(canonical_edges=False).canonical_edges(raw), raw)


def test_photo_side_reads_only_the_edge_map(tmp_path):
    model = small().eval()
    rng = np.random.default_rng(0)
    photos_a = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    photos_b = rng.integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    edges = _edge_maps(2, 96)
    with pytest.raises(ConfigError, match="edge maps"):
        model.photo_forward(torch.rand(1, 3, 96, 96))
    # given edge maps, the RGB photo does not matter, and the result is the sketch path's
    out_a = model.embed_photos(photos_a, edges)
    np.testing.assert_allclose(out_a, model.embed_photos(photos_b, edges), atol=1e-6)
    canonical = model.canonical_edges(edges)
    np.testing.assert_allclose(out_a, model.embed_sketches(canonical), atol=1e-5)
    feats = model.photo_features(photos_a, edges)
    np.testing.assert_allclose(feats, model.sketch_features(canonical), atol=1e-5)
    # a learnt W survives a checkpoint round trip and drives the feature distances
    with torch.no_grad():
        model.holef_weight.add_(0.01 * torch.randn(512, 512, generator=torch.Generator()))
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / "d.safetensors"))
    dist = loaded.feature_distances(feats.astype(np.float16), feats)
    expected = holef_pairwise(
        torch.from_numpy(feats.astype(np.float16).astype(np.float32)),
        torch.from_numpy(feats),
        model.holef_weight.detach(),
    )
    np.testing.assert_allclose(dist, expected.numpy(), atol=1e-5)


BLANK_SAILBOAT = "sketchy/photos/sailboat/n04128499_10422.jpg"  # no edge above the threshold


def test_a_photo_without_edges_beside_others_keeps_the_batch_shape(shared_data):
    """A blank edge map used to fall back to paper of the raw map's size (224, the shipped
    model's photo size) beside the others' canonical 256 px, and np.stack refused the batch."""
    from engine.edges import edge_map_image
    from engine.images import load_photo, prepare_photo

    model = small()
    photos = [BLANK_SAILBOAT, "sketchy/photos/sailboat/n04128499_10000.jpg"]
    raw = np.stack(
        [
            edge_map_image(Image.fromarray(prepare_photo(load_photo(shared_data / p), 224)))
            for p in photos
        ]
    )
    assert (raw[0] == 255).all() and (raw[1] < 128).any()  # one blank, one with edges
    canonical = model.canonical_edges(raw)
    assert canonical.shape == (2, 96, 96)
    assert (canonical[0] == 255).all() and (canonical[1] < 128).any()
