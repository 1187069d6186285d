"""Fitted binarisation (engine.models.fitted): the fit against a naive reference, ITQ's
guarantees, every method's codes through the fitted stage, and a bit-exact reload from a
float16 checkpoint."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from app.cli import main
from engine.codes import pack_codes
from engine.errors import CodesNotFittedError, ConfigError
from engine.models import (
    create,
    list_methods,
    load_checkpoint,
    model_id,
    read_checkpoint_info,
    save_checkpoint,
)
from engine.models.fitted import fit_codes, fit_model_codes, itq_rotation, with_fitted_codes
from engine.sketch import load_sketch
from tests.engine.test_models import SMALL
from training.progress import drain


def naive_fit(sketches, photos, k, code_fit="both", iterations=50, seed=0):
    """The fit written out plainly: loops for the means and the covariance, an eigen-
    decomposition for PCA, ITQ with R from the SVD of V^T B."""
    s, p = np.asarray(sketches, np.float64), np.asarray(photos, np.float64)
    dim = s.shape[1]
    s_mean = np.array([sum(row[d] for row in s) / len(s) for d in range(dim)])
    p_mean = np.array([sum(row[d] for row in p) / len(p) for d in range(dim)])
    rows = [row - p_mean for row in p]
    if code_fit in ("both", "sketches"):
        rows = [row - s_mean for row in s] + rows
    pca_rows = [row - s_mean for row in s] if code_fit == "sketches" else rows
    cov = np.zeros((dim, dim))
    for row in pca_rows:
        cov += np.outer(row, row)
    values, vectors = np.linalg.eigh(cov)
    basis = vectors[:, np.argsort(-values)[:k]]
    for j in range(k):  # the sign convention: the largest-magnitude entry positive
        if basis[np.argmax(np.abs(basis[:, j])), j] < 0:
            basis[:, j] = -basis[:, j]
    v = np.array(rows) @ basis
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, k)))
    for _ in range(iterations):
        b = np.where(v @ rotation >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ b)
        rotation = u @ wt
    return s_mean, p_mean, basis @ rotation


def _outputs(seed, n=12, dim=6):
    rng = np.random.default_rng(seed)
    scales = np.array([3.0, 2.0, 1.5, 1.0, 0.6, 0.3])[:dim]  # distinct principal directions
    return rng.standard_normal((n, dim)) * scales + rng.standard_normal(dim)


@pytest.mark.parametrize("code_fit", ["both", "photos", "sketches"])
@pytest.mark.parametrize("dim,bits", [(6, 4), (4, 4)])
def test_fit_matches_the_naive_reference(code_fit, dim, bits):
    s, p = _outputs(1, dim=dim), _outputs(2, dim=dim) + 2.0
    fit = fit_codes(s, p, bits, code_fit=code_fit)
    s_mean, p_mean, projection = naive_fit(s, p, bits, code_fit)
    np.testing.assert_allclose(fit.sketch_mean, s_mean, atol=1e-6)
    np.testing.assert_allclose(fit.photo_mean, p_mean, atol=1e-6)
    np.testing.assert_allclose(fit.projection, projection, atol=1e-5)
    assert fit.projection.dtype == np.float32 and fit.projection.shape == (dim, bits)


def test_itq_loss_never_increases_and_the_projection_is_orthonormal():
    rng = np.random.default_rng(0)
    s = rng.standard_normal((300, 80)) @ rng.standard_normal((80, 80))
    p = rng.standard_normal((300, 80)) @ rng.standard_normal((80, 80)) + 1.0
    fit = fit_codes(s, p, 32)
    losses = np.array(fit.losses)
    assert len(losses) == 51
    assert (np.diff(losses) <= 1e-9 * losses[0]).all()
    assert losses[-1] < losses[0]  # the rotation does reduce the quantisation loss
    gram = fit.projection.astype(np.float64).T @ fit.projection
    np.testing.assert_allclose(gram, np.eye(32), atol=1e-5)
    rotation, _ = itq_rotation(rng.standard_normal((50, 8)), iterations=5)
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(8), atol=1e-12)


def test_fitting_is_deterministic_and_photos_only_ignores_the_sketches():
    s, p = _outputs(3, n=40), _outputs(4, n=40)
    a, b = fit_codes(s, p, 4, code_fit="both"), fit_codes(s.copy(), p.copy(), 4, code_fit="both")
    assert a.projection.tobytes() == b.projection.tobytes()
    assert a.sketch_mean.tobytes() == b.sketch_mean.tobytes()
    other = fit_codes(_outputs(5, n=40), p, 4, code_fit="photos")
    assert other.projection.tobytes() == fit_codes(s, p, 4, code_fit="photos").projection.tobytes()
    assert other.projection.tobytes() != a.projection.tobytes()


def test_fit_refuses_too_few_rows_and_unknown_options():
    with pytest.raises(ConfigError, match="at least 8 rows"):
        fit_codes(_outputs(0, n=3, dim=6)[:, :6], _outputs(1, n=2), 8, code_fit="photos")
    with pytest.raises(ConfigError, match="sketches and photos"):
        fit_codes(np.empty((0, 6)), _outputs(1), 4)
    with pytest.raises(ConfigError, match="code_fit"):
        fit_codes(_outputs(0), _outputs(1), 4, code_fit="sketch")
    with pytest.raises(ConfigError, match="codes"):
        create("baseline", codes="itq", pretrained=False)


def _real_arrays(shared_data, size_s, size_p, n=24):
    sketch_files = sorted((shared_data / "sketchy" / "sketches").rglob("*.png"))[:: 2600 // n][:n]
    photo_files = sorted((shared_data / "sketchy" / "photos").rglob("*.jpg"))[:: 2600 // n][:n]
    sketches = np.stack(
        [np.asarray(Image.fromarray(load_sketch(f)).resize((size_s, size_s))) for f in sketch_files]
    )
    photos = np.stack(
        [np.asarray(Image.open(f).convert("RGB").resize((size_p, size_p))) for f in photo_files]
    )
    return sketches, photos


@pytest.mark.parametrize("method", list_methods())
def test_every_method_makes_fitted_codes_that_reload_bit_exactly(method, shared_data, tmp_path):
    torch.manual_seed(0)
    model = create(method, **SMALL[method], bits=16, codes="fitted").eval()
    sketches, photos = _real_arrays(shared_data, model.sketch_size, model.photo_size)
    with pytest.raises(CodesNotFittedError, match="fit-codes"):
        model.encode_sketches(sketches[:2])
    with pytest.raises(CodesNotFittedError):
        model.encode_photos(photos[:2])
    unfitted_id = model_id(model)

    fit = drain(fit_model_codes(model, sketches, photos, batch_size=10))
    assert model.fitted_codes.is_fitted and model_id(model) != unfitted_id
    raw_s = model.embed_sketches(sketches, raw=True)
    raw_p = model.embed_photos(photos, raw=True)
    emb_s, emb_p = model.embed_sketches(sketches), model.embed_photos(photos)
    np.testing.assert_allclose(emb_s, (raw_s - fit.sketch_mean) @ fit.projection, atol=1e-4)
    np.testing.assert_allclose(emb_p, (raw_p - fit.photo_mean) @ fit.projection, atol=1e-4)
    codes = model.encode_photos(photos)
    np.testing.assert_array_equal(codes, pack_codes(emb_p))
    assert 0.2 < np.unpackbits(codes).mean() < 0.8  # centred: bits split the photos

    full = save_checkpoint(model, tmp_path / "full.safetensors")
    half = save_checkpoint(model, tmp_path / "half.safetensors", weights_dtype="float16")
    for path in (full, half):
        loaded = load_checkpoint(path)
        assert loaded.config.codes == "fitted"
        assert model_id(loaded) == read_checkpoint_info(path).metadata["model_id"]
        for name in ("sketch_mean", "photo_mean", "projection"):
            stored = getattr(loaded.fitted_codes, name)
            assert stored.dtype == torch.float32
            assert torch.equal(stored, getattr(model.fitted_codes, name)), (path.name, name)
    np.testing.assert_array_equal(load_checkpoint(full).encode_photos(photos), codes)


def test_sign_checkpoints_load_unchanged_and_a_copy_is_fitted_from_their_weights(tmp_path):
    torch.manual_seed(0)
    model = create("baseline", image_size=96, pretrained=False).eval()
    path = save_checkpoint(model, tmp_path / "sign.safetensors")
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["sketch_search"])
    # a checkpoint written before the codes option: no codes/code_fit in its config
    for key in ("codes", "code_fit"):
        meta["config"].pop(key)
    header["__metadata__"]["sketch_search"] = json.dumps(meta)
    new_header = json.dumps(header).encode()
    new_header += b" " * (-len(new_header) % 8)
    old = tmp_path / "old.safetensors"
    old.write_bytes(len(new_header).to_bytes(8, "little") + new_header + raw[8 + header_len :])
    loaded = load_checkpoint(old)
    assert loaded.config.codes == "sign" and loaded.fitted_codes is None
    assert model_id(loaded) == model_id(model)

    fitted = with_fitted_codes(loaded, "photos")
    assert fitted.config.codes == "fitted" and fitted.config.code_fit == "photos"
    assert not fitted.fitted_codes.is_fitted
    sketches = np.full((2, 96, 96), 255, np.uint8)
    np.testing.assert_array_equal(
        fitted.embed_sketches(sketches, raw=True), loaded.embed_sketches(sketches)
    )
    with pytest.raises(ConfigError, match="sign codes"):
        drain(fit_model_codes(loaded, sketches, np.zeros((2, 96, 96, 3), np.uint8)))


def test_cli_compact_keeps_the_fit_exact(tmp_path, capsys):
    torch.manual_seed(0)
    model = create("baseline", image_size=96, pretrained=False, bits=16, codes="fitted").eval()
    rng = np.random.default_rng(0)
    drain(
        fit_model_codes(
            model,
            rng.integers(0, 256, (20, 96, 96), dtype=np.uint8),
            rng.integers(0, 256, (20, 96, 96, 3), dtype=np.uint8),
        )
    )
    src = save_checkpoint(model, tmp_path / "m.safetensors")
    dst = tmp_path / "m16.safetensors"
    assert main(["compact", str(src), str(dst)]) == 0
    loaded = load_checkpoint(dst)
    assert read_checkpoint_info(dst).metadata["weights_dtype"] == "float16"
    assert torch.equal(loaded.fitted_codes.projection, model.fitted_codes.projection)
    assert loaded.hash_head[-1].weight.dtype == torch.float32  # loaded back into float32
