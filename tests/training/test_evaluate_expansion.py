"""``evaluate``'s figures with query expansion and asymmetric ranking are those of brute-force
loops (the expectation over the orders of tied photos, as every headline figure)."""

import numpy as np

from engine.codes import hamming_reference, pack_codes, unpack_codes
from engine.models import create
from engine.sketch_input import sketch_input
from tests.engine.test_asymmetric import brute_force, fitted_baseline
from training import metrics as M
from training.arrays import prepare_arrays
from training.data import load_dataset
from training.evaluate import EvalConfig, evaluate
from training.progress import drain

CLASSES = ("cat", "dog", "teapot", "umbrella", "zebra", "violin", "cup", "bench")


def naive_expanded_map(model, data_dir, m):
    data = load_dataset(data_dir).restrict_classes(CLASSES).subset("test")
    arrays = drain(prepare_arrays(data, model.photo_size, model.sketch_size))
    sketches = np.stack([sketch_input(s.path) for s in data.sketches])  # as a search's query
    q = pack_codes(model.embed_sketches(sketches))
    g = pack_codes(model.embed_photos(arrays.photos))
    qb, gb = unpack_codes(q, model.bits).astype(int), unpack_codes(g, model.bits).astype(int)
    ranked, distances = [], []
    for i in range(len(q)):
        dist = hamming_reference(q[i : i + 1], g)[0]
        near = sorted(range(len(g)), key=lambda j: (dist[j], j))[:m]
        votes = gb[near].sum(axis=0) * 2 - m + (qb[i] * 2 - 1)  # +1 per 1 bit, -1 per 0 bit
        new = np.where(votes > 0, 1, np.where(votes < 0, 0, qb[i]))
        dist = np.abs(gb - new).sum(axis=1)
        order = sorted(range(len(g)), key=lambda j: (dist[j], j))
        ranked.append(arrays.photo_labels[order] == arrays.sketch_labels[i])
        distances.append(dist[order])
    ranked = np.array(ranked)
    return M.tie_aware_map(ranked, np.array(distances), ranked.sum(axis=1))


def naive_asymmetric_map(model, data_dir, m, stored=True):
    """``stored``: the photos ranked by their outputs as a library stores them (float16), else
    by their codes alone."""
    data = load_dataset(data_dir).restrict_classes(CLASSES).subset("test")
    arrays = drain(prepare_arrays(data, model.photo_size, model.sketch_size))
    values = model.embed_sketches(np.stack([sketch_input(s.path) for s in data.sketches]))
    outputs = model.embed_photos(arrays.photos)
    g = pack_codes(outputs)
    ids = np.arange(len(g))
    held = outputs.astype(np.float16) if stored else None
    rows = brute_force(values, ids, g, model.bits, len(g), len(g), m, photo_values=held)
    ranked = np.array([arrays.photo_labels[[i for i, _ in r]] for r in rows])
    ranked = ranked == arrays.sketch_labels[:, None]
    distances = np.array([[d for _, d in r] for r in rows])
    return M.tie_aware_map(ranked, distances, ranked.sum(axis=1))


def test_expanded_figures_match_a_brute_force_loop(shared_data):
    model = create("baseline", image_size=96, pretrained=True).eval()
    config = EvalConfig(
        classes=CLASSES, baseline=False, real_valued=False, expand=3, asymmetric=False
    )
    report = drain(evaluate(model, shared_data / "sketchy", config))
    assert report.expanded["m"] == 3 and report.asymmetric == {}
    expected = naive_expanded_map(model, shared_data / "sketchy", 3)
    assert abs(report.expanded["map_all"] - expected) < 1e-9
    assert report.expanded["map_all"] != report.metrics["map_all"]  # the expansion did something
    plain = drain(
        evaluate(
            model, shared_data / "sketchy", EvalConfig(classes=CLASSES, expand=0, asymmetric=False)
        )
    )
    assert plain.expanded == {} and plain.metrics == report.metrics


def test_asymmetric_figures_match_a_brute_force_loop(shared_data):
    """By default (a category-level model) the report holds the asymmetric ranking's figures,
    against the photos' stored outputs for a model with fitted codes (against their codes for
    sign codes), and the expansion is the asymmetric one, each as a plain loop computes them;
    ``codes_only`` then holds both against the photos' codes alone."""
    model = create("baseline", image_size=96, pretrained=True).eval()
    config = EvalConfig(classes=CLASSES, baseline=False, real_valued=False, expand=3)
    signs = drain(evaluate(model, shared_data / "sketchy", config))  # stores no outputs
    assert signs.codes_only == {} and "photo codes" in signs.protocol["asymmetric"]
    expected = naive_asymmetric_map(model, shared_data / "sketchy", 0, stored=False)
    assert abs(signs.asymmetric["map_all"] - expected) < 1e-6
    model = fitted_baseline(shared_data)  # fitted codes: ranked against the stored outputs
    report = drain(evaluate(model, shared_data / "sketchy", config))
    expected = naive_asymmetric_map(model, shared_data / "sketchy", 0)
    assert abs(report.asymmetric["map_all"] - expected) < 1e-6
    expanded = naive_asymmetric_map(model, shared_data / "sketchy", 3)
    assert abs(report.expanded["map_all"] - expanded) < 1e-6
    assert report.asymmetric["map_all"] != report.metrics["map_all"]
    assert "asymmetric" in report.protocol["expanded"]
    assert "stored outputs" in report.protocol["asymmetric"]
    codes_only = report.codes_only
    by_codes = naive_asymmetric_map(model, shared_data / "sketchy", 0, stored=False)
    assert abs(codes_only["asymmetric"]["map_all"] - by_codes) < 1e-6
    by_codes = naive_asymmetric_map(model, shared_data / "sketchy", 3, stored=False)
    assert abs(codes_only["expanded"]["map_all"] - by_codes) < 1e-6
    assert codes_only["asymmetric"] != report.asymmetric
    assert report.to_json()["codes_only"] == codes_only
    assert report.to_json()["asymmetric"] == report.asymmetric
