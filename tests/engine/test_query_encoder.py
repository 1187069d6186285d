"""The frozen query encoder (engine.query_encoder) answers as the model's own sketch side, on
real sketches, with the shipped default and an untrained model; and falls back to the model's
own path, with its own errors, wherever the frozen graph does not apply."""

import os

import numpy as np
import pytest
import torch

from engine.devices import threads_beside_gui, torch_threads
from engine.errors import CodesNotFittedError
from engine.frozen import RUNTIMES
from engine.models import load_checkpoint
from engine.models.fitted import with_fitted_codes
from engine.query_encoder import QueryEncoder
from engine.sketch import load_sketch
from engine.store import SHIPPED_DIR, create_fresh


@pytest.fixture(scope="module")
def sketches(shared_data):
    files = sorted((shared_data / "sketchy" / "sketches").rglob("*.png"))[::97][:12]
    return np.stack([load_sketch(f) for f in files])


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("which", ["default", "untrained baseline", "dssa-shoes-64"])
def test_the_frozen_graph_answers_as_the_model(which, runtime, sketches):
    if which == "untrained baseline":
        model = create_fresh("baseline", bits=64, image_size=96).eval()
    else:
        model = load_checkpoint(SHIPPED_DIR / f"{which}.safetensors").eval()
    # from this runtime on; DSSA's sketch side does not export to ONNX (an adaptive pooling
    # to a size that does not divide its input's), so TorchScript answers for it
    encoder = QueryEncoder(model, runtimes=RUNTIMES[RUNTIMES.index(runtime) :])
    expected = "torchscript" if which.startswith("dssa") else runtime
    np.testing.assert_array_equal(encoder.embed(sketches[:1]), model.embed_sketches(sketches[:1]))
    assert not encoder.frozen  # nothing is built until asked: a one-query command never pays it
    encoder.warm_up()
    assert encoder.frozen and encoder.runtime == expected, encoder.why_not
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


def test_queries_run_on_the_threads_asked_for_and_leave_the_process_as_it_was(sketches):
    """The app's searches leave a core to the GUI thread (``threads_beside_gui``): each frozen
    query runs on that many torch threads, with the same answer, and the count is set back
    after, also when the block fails."""
    model = load_checkpoint(SHIPPED_DIR / "default.safetensors").eval()
    for threads in (1, 2):  # ONNX Runtime's session holds its count from the start
        on_onnx = QueryEncoder(model, threads=threads)
        on_onnx.warm_up()
        assert on_onnx.runtime == "onnxruntime", on_onnx.why_not
        options = on_onnx._graph.session.get_session_options()
        assert options.intra_op_num_threads == threads
    plain = QueryEncoder(model, runtimes=("torchscript",))
    one = QueryEncoder(model, threads=1, runtimes=("torchscript",))
    plain.warm_up()
    one.warm_up()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        graph = one._graph  # the real graph, watched: how many threads it runs on
        one._graph = lambda batch: seen.append(torch.get_num_threads()) or graph(batch)
        np.testing.assert_array_equal(one.embed(sketches[:1]), plain.embed(sketches[:1]))
        assert seen == [1] and torch.get_num_threads() == 2
        with pytest.raises(ValueError), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise ValueError("a query that fails")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert threads_beside_gui() == max(1, (os.cpu_count() or 1) - 1)


def test_the_apps_model_session_searches_beside_the_gui_thread(tmp_path):
    from engine.library import Library
    from engine.session import activate_model

    library = Library(tmp_path / "lib")
    try:
        active = activate_model(library, "")
        assert active.searcher.encoder.runtime == "onnxruntime"
        assert active.searcher.encoder.threads == threads_beside_gui()
        options = active.searcher.encoder._graph.session.get_session_options()
        assert options.intra_op_num_threads == threads_beside_gui()
    finally:
        library.close()
