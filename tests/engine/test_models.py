"""Every registered method through forward, backward, encode and a checkpoint round trip, and
the checkpoint loader's refusals."""

import json
import pickle
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.errors import CheckpointError, ConfigError, UnknownMethodError
from engine.models import (
    create,
    list_methods,
    load_checkpoint,
    model_id,
    read_checkpoint_info,
    save_checkpoint,
)
from engine.models.fitted import fit_codes

SMALL = {
    "baseline": {"image_size": 96, "pretrained": False},
    "dssa": {"image_size": 96, "pretrained": False},
    "semi3": {"image_size": 64, "pretrained": False, "embed_dim": 32},
    "dsh": {"image_size": 64, "pretrained": False, "fc1": 32, "fc2": 16},
    "gdh": {
        "image_size": 64,
        "pretrained": False,
        "gen_channels": 4,
        "gi_blocks": 1,
        "gs_blocks": 1,
    },
    "anchor": {"image_size": 96, "photo_size": 96, "pretrained": False},
}


def small(method: str, **extra):
    """A small model of ``method``; one whose codes are fitted gets a fit of random outputs."""
    torch.manual_seed(0)
    model = create(method, **{**SMALL.get(method, {}), **extra})
    if model.fitted_codes is not None:
        rng = np.random.default_rng(0)
        rows = rng.standard_normal((2, 2 * model.bits, model.raw_dim))
        model.fitted_codes.load(fit_codes(rows[0], rows[1], model.bits))
    return model


def test_registry_lists_methods_and_refuses_unknown():
    assert "baseline" in list_methods()
    with pytest.raises(UnknownMethodError, match="available"):
        create("no-such-method")
    with pytest.raises(ConfigError, match="bits"):
        create("baseline", bits=48)
    with pytest.raises(ConfigError, match="Unknown option"):
        create("baseline", colour="blue")


@pytest.mark.parametrize("method", list_methods())
@pytest.mark.parametrize("bits", [32, 64])
def test_forward_backward_encode(method, bits):
    model = small(method, bits=bits)
    s, p = model.sketch_size, model.photo_size
    sketches = torch.rand(2, 1, s, s)
    photos = torch.rand(2, 3, p, p)
    model.train()
    out_s = model.sketch_forward(sketches)
    out_p = model.photo_forward(photos, model.edge_maps(photos))
    assert out_s.shape == (2, model.raw_dim) and out_p.shape == (2, model.raw_dim)
    (out_s.pow(2).mean() + out_p.pow(2).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    # numpy boundary: uint8 arrays of another size are resized on the device
    codes_s = model.encode_sketches(np.full((3, 256, 256), 255, np.uint8))
    codes_p = model.encode_photos(np.zeros((3, 150, 150, 3), np.uint8))
    assert codes_s.shape == codes_p.shape == (3, bits // 8)
    assert codes_s.dtype == np.uint8
    assert model.training  # encoding restores the training flag


@pytest.mark.parametrize("method", list_methods())
def test_checkpoint_round_trip_keeps_codes_and_id(method, tmp_path):
    model = small(method).eval()
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (4, model.photo_size, model.photo_size, 3), dtype=np.uint8)
    path = save_checkpoint(model, tmp_path / "m.safetensors", metrics={"map_all": 0.5})
    info = read_checkpoint_info(path)
    assert (info.method, info.bits, info.metrics["map_all"]) == (method, model.bits, 0.5)
    loaded = load_checkpoint(path, method=method, bits=model.bits)
    assert model_id(loaded) == model_id(model) == info.metadata["model_id"]
    np.testing.assert_allclose(loaded.embed_photos(photos), model.embed_photos(photos), atol=1e-5)
    with pytest.raises(CheckpointError, match="not 'other'"):
        load_checkpoint(path, method="other")
    with pytest.raises(CheckpointError, match="not 128-bit"):
        load_checkpoint(path, bits=128)


def test_model_id_changes_with_weights():
    a, b = small("baseline"), small("baseline")
    assert model_id(a) == model_id(b)
    with torch.no_grad():
        b.hash_head[-1].bias.add_(1.0)
    assert model_id(a) != model_id(b)


class _Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_checkpoint_is_refused_without_unpickling(tmp_path, capsys):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Payload(), protocol=4))
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(path)
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, torch_file)  # a zip-based torch checkpoint
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(torch_file)
    assert "pwned" not in capsys.readouterr().out


def test_foreign_or_corrupt_safetensors_refused(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not saved by sketch-search"):
        load_checkpoint(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(garbage)


def test_checkpoint_of_wrong_shape_or_newer_format_refused(tmp_path):
    model = small("baseline")
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    info = read_checkpoint_info(path)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["hash_head.3.weight"] = torch.zeros(7, 3)
    meta = dict(info.metadata)
    save_file(tensors, tmp_path / "shape.safetensors", metadata={"sketch_search": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(tmp_path / "shape.safetensors")
    meta["format_version"] = 99
    save_file(
        model.state_dict(),
        tmp_path / "new.safetensors",
        metadata={"sketch_search": json.dumps(meta)},
    )
    with pytest.raises(CheckpointError, match="Update sketch-search"):
        load_checkpoint(tmp_path / "new.safetensors")


def test_pretrained_backbone_knows_imagenet_classes(shared_data):
    """EfficientNet-Lite0 weights mapped onto timm: Sketchy photos are ImageNet images named by
    their synset, so the synset should be among the top-5 predictions for most of them."""
    from timm.data import ImageNetInfo

    from engine.images import load_photo, prepare_photo
    from engine.models.backbones import ImageNetNormalize, efficientnet_lite0

    info = ImageNetInfo()
    synset_index = {name: i for i, name in enumerate(info.label_names())}
    photos = sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))
    picked = [p for p in photos if p.stem.split("_")[0] in synset_index][::97][:16]
    assert len(picked) >= 8
    batch = np.stack([prepare_photo(load_photo(p, 224), 224) for p in picked])
    net = efficientnet_lite0(pretrained=True, num_classes=1000).eval()
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        top5 = net(ImageNetNormalize()(x)).topk(5, dim=1).indices
    wanted = [synset_index[p.stem.split("_")[0]] for p in picked]
    hits = sum(w in row.tolist() for w, row in zip(wanted, top5, strict=True))
    assert hits / len(picked) >= 0.6, f"only {hits}/{len(picked)} photos in the top 5"
