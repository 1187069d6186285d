"""The frozen query encoder (engine.query_encoder) answers as the model's own sketch side, on
real sketches, with the shipped default and an untrained model; and falls back to the model's
own path, with its own errors, wherever the frozen graph does not apply."""

import numpy as np
import pytest

from engine.errors import CodesNotFittedError
from engine.models import load_checkpoint
from engine.models.fitted import with_fitted_codes
from engine.query_encoder import QueryEncoder
from engine.sketch import load_sketch
from engine.store import SHIPPED_DIR, create_fresh


@pytest.fixture(scope="module")
def sketches(shared_data):
    files = sorted((shared_data / "sketchy" / "sketches").rglob("*.png"))[::97][:12]
    return np.stack([load_sketch(f) for f in files])


@pytest.mark.parametrize("which", ["default", "untrained baseline"])
def test_the_frozen_graph_answers_as_the_model(which, sketches):
    if which == "default":
        model = load_checkpoint(SHIPPED_DIR / "default.safetensors").eval()
    else:
        model = create_fresh("baseline", bits=64, image_size=96).eval()
    encoder = QueryEncoder(model)
    np.testing.assert_array_equal(encoder.embed(sketches[:1]), model.embed_sketches(sketches[:1]))
    assert not encoder.frozen  # nothing is built until asked: a one-query command never pays it
    encoder.warm_up()
    assert encoder.frozen, encoder.why_not
    got = np.concatenate([encoder.embed(s[None]) for s in sketches])
    want = model.embed_sketches(sketches)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, atol=1e-4 * scale)
    near_zero = np.abs(want) < 1e-4 * scale  # a sign there may flip with rounding
    assert ((got > 0) == (want > 0))[~near_zero].all()


def test_other_inputs_take_the_models_own_path(sketches):
    model = create_fresh("baseline", bits=64, image_size=96).eval()
    encoder = QueryEncoder(model)
    encoder.warm_up()
    assert encoder.frozen
    np.testing.assert_array_equal(encoder.embed(sketches[:3]), model.embed_sketches(sketches[:3]))

    model.train()
    training = QueryEncoder(model)
    training.warm_up()
    assert not training.frozen and "training" in training.why_not
    model.eval()


def test_a_model_that_cannot_answer_keeps_its_own_error(sketches):
    unfitted = with_fitted_codes(create_fresh("baseline", bits=64, image_size=96).eval())
    encoder = QueryEncoder(unfitted)
    encoder.warm_up()
    assert not encoder.frozen and "CodesNotFittedError" in encoder.why_not
    with pytest.raises(CodesNotFittedError):
        encoder.embed(sketches[:1])
