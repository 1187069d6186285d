"""Semi3-Net network: branch sharing, co-attention, the two-branch ablation, the retrieval path
against the training pass, config refusals and the checkpoint size."""

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.models import create
from engine.models.semi3 import CoAttention


def small(**extra):
    torch.manual_seed(0)
    return create("semi3", **{"image_size": 64, "pretrained": False, "embed_dim": 32, **extra})


def test_sketches_and_edge_maps_share_bottom_layers_photos_have_their_own():
    model = small()
    photo = {id(p) for p in model.photo_lower.parameters()}
    drawing = {id(p) for p in model.drawing_lower.parameters()}
    upper = {id(p) for p in model.upper.parameters()}
    assert photo and drawing and upper
    assert not photo & drawing and not photo & upper and not drawing & upper
    # the photo trunk is a copy of the pretrained one, not a tie to the drawing trunk
    first_p = next(model.photo_lower.parameters())
    first_d = next(model.drawing_lower.parameters())
    assert first_p.data_ptr() != first_d.data_ptr()


def test_coattention_applies_one_weight_vector_to_both_domains():
    torch.manual_seed(0)
    co = CoAttention(8, reduction=2)
    photo, edge = torch.rand(3, 8, 4, 4) + 0.1, torch.rand(3, 8, 4, 4) + 0.1
    out_p, out_e = co(photo, edge)
    w_p = (out_p / photo).mean(dim=(2, 3))
    w_e = (out_e / edge).mean(dim=(2, 3))
    torch.testing.assert_close(w_p, w_e)
    torch.testing.assert_close(w_p, co.weights(photo, edge))
    assert bool(((w_p > 0) & (w_p < 1)).all())
    # the weights read both domains: another edge map changes the photo's recalibration
    assert not torch.allclose(co(photo, torch.rand(3, 8, 4, 4))[0], out_p)


def test_retrieval_path_equals_the_training_pass_in_eval_mode():
    model = small(bits=32).eval()
    sketches, photos = torch.rand(2, 1, 64, 64), torch.rand(3, 3, 64, 64)
    edges = model.edge_maps(photos)
    with torch.no_grad():
        zs, zp, ze = model.embeddings(sketches, photos, edges)
        torch.testing.assert_close(model.sketch_forward(sketches), model.hash(zs))
        torch.testing.assert_close(model.photo_forward(photos, edges), model.hash(zp))
    assert ze.shape == zp.shape == (3, 32)
    with pytest.raises(ConfigError, match="edge maps"):
        model.photo_forward(photos)


def test_two_branch_ablation_needs_no_edge_maps():
    model = small(coattention=False, edge_branch=False).eval()
    photos = torch.rand(2, 3, 64, 64)
    assert model.edge_maps(photos) is None
    zs, zp, ze = model.embeddings(torch.rand(2, 1, 64, 64), photos, None)
    assert zs.shape == (2, 32)
    assert ze is None and zp.shape == (2, 32)
    codes = model.encode_photos(np.zeros((2, 64, 64, 3), np.uint8))
    assert codes.shape == (2, 8)


def test_config_refusals_and_paper_backbone():
    with pytest.raises(ConfigError, match="co-attention needs the edge-map branch"):
        small(edge_branch=False)
    with pytest.raises(ConfigError, match="shared_from"):
        small(shared_from=7)
    with pytest.raises(ConfigError, match="image_size"):
        small(image_size=100)
    with pytest.raises(ConfigError, match="binarize"):
        small(binarize="lsh")
    paper = small(backbone="paper")
    assert paper.sketch_forward(torch.rand(2, 1, 64, 64)).shape == (2, 64)


def test_itq_codes_come_from_the_stored_projection_learned_ones_from_the_hash_layer():
    itq, learned = small(bits=32).eval(), small(bits=32, binarize="learned").eval()
    assert "itq_projection" in itq.state_dict() and "itq_projection" not in learned.state_dict()
    z = torch.randn(5, 32)
    with torch.no_grad():
        itq.itq_mean.copy_(z.mean(dim=0))
        itq.itq_projection.copy_(torch.linalg.qr(torch.randn(32, 32))[0])
        torch.testing.assert_close(itq.hash(z), (z - itq.itq_mean) @ itq.itq_projection)
        torch.testing.assert_close(learned.hash(z), learned.hash_layer(z))
        torch.testing.assert_close(itq.learned_hash(z), itq.hash_layer(z))


def test_default_model_fits_the_shipped_size_limit():
    model = create("semi3", pretrained=False, bits=128)
    size = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    assert size < 25e6, size


def test_unit_gate_is_twice_the_se_gate_and_starts_near_one():
    torch.manual_seed(0)
    se, unit = CoAttention(32, reduction=4), CoAttention(32, reduction=4, gate="unit")
    unit.load_state_dict(se.state_dict())
    photo, edge = torch.rand(4, 32, 3, 3), torch.rand(4, 32, 3, 3)
    with torch.no_grad():
        se_gate, unit_gate = se.weights(photo, edge), unit.weights(photo, edge)
    torch.testing.assert_close(unit_gate, 2 * se_gate)
    # untrained, the SE gate halves the maps on average; the unit gate keeps their scale
    assert abs(float(se_gate.mean()) - 0.5) < 0.1
    assert abs(float(unit_gate.mean()) - 1.0) < 0.2
    model = small(coattention_gate="unit")
    assert model.coattention.scale == 2.0 and small().coattention.scale == 1.0
    with pytest.raises(ConfigError, match="coattention_gate"):
        small(coattention_gate="softmax")
