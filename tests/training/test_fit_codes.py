"""Fitting codes on training data only: at the end of training (the trainer's fit step) and post
hoc (``fit_checkpoint``, ``sketch-search fit-codes``); never on a test split, never on the 21
zero-shot test classes."""

import json

import numpy as np
import pytest
import torch

from app.cli import EXIT_ERROR, main
from engine.errors import ConfigError
from engine.models import create, load_checkpoint, read_checkpoint_info, save_checkpoint
from engine.models.fitted import fit_codes
from tests.training.conftest import FEW_CLASSES, draw_sketch, photo
from training import TrainConfig, train
from training.arrays import prepare_arrays
from training.data import load_dataset
from training.fit_codes import fit_checkpoint
from training.progress import drain


def _raw_fit(model, data_dir, split, code_fit="photos", drop=()):
    """The fit recomputed from scratch: raw outputs of the split's sketches and photos."""
    dataset = load_dataset(data_dir)
    dataset = dataset.subset(split) if split else dataset
    data = drain(prepare_arrays(dataset, model.photo_size, model.sketch_size))
    names = np.array(data.dataset.classes)
    keep_s = ~np.isin(names[data.sketch_labels], drop)
    keep_p = ~np.isin(names[data.photo_labels], drop)
    s = model.embed_sketches(data.sketches[keep_s], raw=True)
    p = model.embed_photos(data.photos[keep_p], raw=True)
    return fit_codes(s, p, model.bits, code_fit=code_fit), len(s), len(p)


def test_training_fits_the_codes_on_the_training_split(sketchy, tmp_path):
    config = TrainConfig(
        model={"bits": 16, "image_size": 96, "pretrained": False, "codes": "fitted"},
        epochs=2,
        batch_size=4,
        per_class=2,
        max_steps_per_epoch=2,
        classes=FEW_CLASSES[:2],
        seed=7,
    )
    phases = []
    result = drain(train(config, sketchy, tmp_path / "m.safetensors"), lambda e: phases.append(e))
    fits = [e for e in phases if e.phase == "fit"]
    assert fits and {e.epoch for e in fits} == {1, 2} and "fitting codes" in fits[-1].message
    model = load_checkpoint(result.checkpoint)
    assert model.fitted_codes.is_fitted

    split = load_dataset(sketchy).restrict_classes(FEW_CLASSES[:2]).subset("train")
    note = read_checkpoint_info(result.checkpoint).metadata["codes_fit"]
    assert (note["sketches"], note["photos"]) == (len(split.sketches), len(split.photos))
    assert note["split"] == "train" and note["hidden_classes_dropped"] == []
    # the stored fit is the fit of the saved weights' raw outputs on that split, bit for bit
    fresh = load_checkpoint(result.checkpoint)
    data = drain(prepare_arrays(split, fresh.photo_size, fresh.sketch_size))
    want = fit_codes(
        fresh.embed_sketches(data.sketches, raw=True), fresh.embed_photos(data.photos, raw=True), 16
    )
    assert torch.equal(model.fitted_codes.projection, torch.from_numpy(want.projection))
    assert torch.equal(model.fitted_codes.photo_mean, torch.from_numpy(want.photo_mean))


@pytest.fixture
def with_hidden_class(tmp_path):
    """Two classes of 9 photos with a sketch each, and a 'Giraffe' class (one of the 21
    zero-shot test classes) of 4."""
    root = tmp_path / "cat"
    for c, (name, n) in enumerate((("cats", 9), ("dogs", 9), ("Giraffe", 4))):
        for i in range(n):
            photo(root / "photos" / name / f"p{i}.jpg", 10 * c + i)
            draw_sketch(root / "sketches" / name / f"p{i}-1.png", 10 * c + i)
    return root


def test_fit_checkpoint_never_sees_the_hidden_classes(with_hidden_class, tmp_path):
    torch.manual_seed(0)
    source = create("baseline", bits=16, image_size=96, pretrained=False).eval()
    src = save_checkpoint(source, tmp_path / "src.safetensors", name="tiny", data={"n": 1})
    before = src.read_bytes()
    out = drain(fit_checkpoint(src, with_hidden_class, tmp_path / "fitted.safetensors"))
    assert src.read_bytes() == before  # the source is untouched
    info = read_checkpoint_info(out)
    note = info.metadata["codes_fit"]
    assert note["hidden_classes_dropped"] == ["Giraffe"]
    assert (note["sketches"], note["photos"]) == (18, 18)
    assert note["split"] == "all (no split.json)" and note["rotation_fitted_on"] == "photos"
    assert info.name == "tiny-fitted" and info.metadata["data"] == {"n": 1}
    assert info.config["codes"] == "fitted"
    want, _, _ = _raw_fit(source, with_hidden_class, None, drop=["Giraffe"])
    fitted = load_checkpoint(out)
    assert torch.equal(fitted.fitted_codes.projection, torch.from_numpy(want.projection))
    assert torch.equal(fitted.fitted_codes.sketch_mean, torch.from_numpy(want.sketch_mean))


def test_fit_checkpoint_never_sees_the_classes_its_training_held_out(with_hidden_class, tmp_path):
    """A validation run's codes are fitted without its held-out classes, as its weights were
    trained without them; a run restricted to some classes is fitted on those alone."""
    for i in range(9):
        photo(with_hidden_class / "photos" / "owls" / f"p{i}.jpg", 40 + i)
        draw_sketch(with_hidden_class / "sketches" / "owls" / f"p{i}-1.png", 40 + i)
    torch.manual_seed(0)
    source = create("baseline", bits=16, image_size=96, pretrained=False).eval()
    held = {"config": {"hold_out": ["Dogs"], "classes": None}}  # names match by class_key
    src = save_checkpoint(source, tmp_path / "val.safetensors", training=held)
    out = drain(fit_checkpoint(src, with_hidden_class, tmp_path / "fitted.safetensors"))
    note = read_checkpoint_info(out).metadata["codes_fit"]
    assert (note["sketches"], note["photos"], note["classes"]) == (18, 18, 2)
    want, _, _ = _raw_fit(source, with_hidden_class, None, drop=["Giraffe", "dogs"])
    fitted = load_checkpoint(out).fitted_codes
    assert torch.equal(fitted.projection, torch.from_numpy(want.projection))
    assert torch.equal(fitted.photo_mean, torch.from_numpy(want.photo_mean))

    only = {"config": {"hold_out": [], "classes": ["dogs", "owls", "Giraffe"]}}
    src = save_checkpoint(source, tmp_path / "few.safetensors", training=only)
    out = drain(fit_checkpoint(src, with_hidden_class, tmp_path / "fitted2.safetensors"))
    note = read_checkpoint_info(out).metadata["codes_fit"]
    assert (note["sketches"], note["photos"]) == (18, 18)
    assert note["hidden_classes_dropped"] == ["Giraffe"]


def test_fit_codes_command_fits_on_the_train_split_only(shared_data, tmp_path, capsys):
    shoes = shared_data / "shoes_v1"
    torch.manual_seed(0)
    source = create("baseline", bits=32, image_size=96, pretrained=False).eval()
    src = save_checkpoint(source, tmp_path / "shoes.safetensors", weights_dtype="float16")
    source = load_checkpoint(src)  # the rounded weights, as fit-codes reads them
    out = tmp_path / "fitted.safetensors"
    args = ["fit-codes", str(src), "--data", str(shoes), "--out", str(out), "--fit-on", "both"]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    splits = json.loads((shoes / "split.json").read_text())
    assert printed["split"] == "train" and printed["path"] == str(out)
    assert printed["photos"] == len(splits["train"]) < len(splits["train"]) + len(splits["test"])
    info = read_checkpoint_info(out)
    assert info.metadata["weights_dtype"] == "float16" and info.config["code_fit"] == "both"
    want, n_s, n_p = _raw_fit(source, shoes, "train", "both")
    assert (n_s, n_p) == (printed["sketches"], printed["photos"])
    assert torch.equal(
        load_checkpoint(out).fitted_codes.projection, torch.from_numpy(want.projection)
    )

    with pytest.raises(SystemExit):  # argparse: only the train split is offered
        main(["fit-codes", str(src), "--data", str(shoes), "--split", "test"])
    with pytest.raises(ConfigError, match="training data only"):
        drain(fit_checkpoint(src, shoes, tmp_path / "x.safetensors", split="test"))
    assert main(["fit-codes", str(src), "--data", str(shoes), "--out", str(src)]) == EXIT_ERROR
    assert "another --out" in capsys.readouterr().err


def test_dssa_codes_fitted_on_its_features(shared_data, tmp_path, capsys):
    """``fit-codes --from-features``: a DSSA model's codes become the fitted PCA + ITQ of its
    D-d features (issue 17): raw outputs are the features, the fit is the one recomputed from
    them, it reloads bit-exactly, and the features' codes are not the hash layer's. Other
    methods refuse the switch."""
    shoes = shared_data / "shoes_v1"
    torch.manual_seed(0)
    source = create("dssa", bits=32, image_size=96, pretrained=False).eval()
    src = save_checkpoint(source, tmp_path / "dssa.safetensors")
    out = tmp_path / "dssa-f.safetensors"
    args = ["fit-codes", str(src), "--data", str(shoes), "--out", str(out), "--from-features"]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    fitted = load_checkpoint(out)
    assert fitted.config.codes_from == "features" and fitted.config.codes == "fitted"
    assert fitted.raw_dim == fitted.config.feature_dim == 512 != fitted.bits
    want, n_s, n_p = _raw_fit(load_checkpoint(src), shoes, "train")
    assert (n_s, n_p) == (printed["sketches"], printed["photos"])
    assert want.projection.shape == (32, 32)  # the hash layer's outputs: not what was fitted
    data = drain(prepare_arrays(load_dataset(shoes).subset("train"), 96, 96))
    feats = fit_codes(
        fitted.embed_sketches(data.sketches, raw=True),
        fitted.embed_photos(data.photos, raw=True),
        32,
        code_fit="photos",
    )
    assert torch.equal(fitted.fitted_codes.projection, torch.from_numpy(feats.projection))
    sketch = data.sketches[:8]
    raw = fitted.sketch_features(sketch)
    np.testing.assert_allclose(fitted.embed_sketches(sketch, raw=True), raw, atol=1e-6)
    codes, features = fitted.encode_sketches_and_features(sketch)
    np.testing.assert_array_equal(codes, fitted.encode_sketches(sketch))
    np.testing.assert_allclose(features, raw, atol=1e-6)
    assert (codes != source.encode_sketches(sketch)).any()

    baseline = save_checkpoint(
        create("baseline", bits=32, image_size=96, pretrained=False), tmp_path / "b.safetensors"
    )
    bad = ["fit-codes", str(baseline), "--data", str(shoes), "--from-features"]
    assert main([*bad, "--out", str(tmp_path / "b-f.safetensors")]) == EXIT_ERROR
    assert "only DSSA" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="must be fitted"):
        create("dssa", bits=32, image_size=96, pretrained=False, codes_from="features")


def test_fit_checkpoint_fits_dssas_hog_term_on_the_training_split(shared_data, tmp_path):
    """--hog-weight: the HOG term is fitted on the training split's drawings: an orthonormal
    PCA basis centred on the photos' mean HOG, and the spreads of both distances over the
    training pairs; a refit without the flag keeps the weight and fits the term again, and
    only DSSA has one."""
    from engine.hog import drawing_hog
    from engine.models.dssa import holef_pairwise

    shoes = shared_data / "shoes_v1"
    torch.manual_seed(0)
    src = save_checkpoint(
        create("dssa", bits=32, image_size=96, hog_dim=24).eval(), tmp_path / "dssa.safetensors"
    )
    out = drain(
        fit_checkpoint(src, shoes, tmp_path / "hog.safetensors", from_features=True, hog_weight=2)
    )
    model = load_checkpoint(out)
    term = model.hog_fit
    note = read_checkpoint_info(out).metadata["codes_fit"]["hog_term"]
    assert note["weight"] == 2.0 and note["dimensions"] == 24
    assert note["sketches"] == note["photos"] == 304  # the training split only
    basis = term.basis.numpy()
    np.testing.assert_allclose(basis.T @ basis, np.eye(24), atol=1e-4)

    train = drain(prepare_arrays(load_dataset(shoes).subset("train"), 96, 96))
    with torch.no_grad():
        sk, ph = model.sketch_drawings(train.sketches), model.photo_drawings(train.photos, None)
        fs, fp = model.features(sk), model.features(ph)
    hp = drawing_hog(ph, 3)  # the term's blocks: 3 x 3 cells by default
    np.testing.assert_allclose(term.mean.numpy(), hp.mean(axis=0), atol=1e-5)
    learnt = holef_pairwise(fs, fp, model.holef_weight.detach()).numpy()
    ps, pp = term.project(drawing_hog(sk, 3)), term.project(hp)
    expected = (learnt.std(), (1.0 - ps @ pp.T).std())
    np.testing.assert_allclose(term.scales.numpy(), expected, rtol=1e-3)

    again = drain(fit_checkpoint(out, shoes, tmp_path / "again.safetensors"))
    refit = load_checkpoint(again)
    assert refit.config.hog_weight == 2.0 and int(refit.hog_fit.fitted) == 1
    torch.testing.assert_close(refit.hog_fit.basis, term.basis, atol=1e-4, rtol=0)
    plain = drain(fit_checkpoint(out, shoes, tmp_path / "plain.safetensors", hog_weight=0))
    assert load_checkpoint(plain).hog_fit is None
    other = save_checkpoint(create("baseline", bits=16, image_size=96), tmp_path / "b.safetensors")
    with pytest.raises(ConfigError, match="HOG"):
        drain(fit_checkpoint(other, shoes, tmp_path / "x.safetensors", hog_weight=1))
