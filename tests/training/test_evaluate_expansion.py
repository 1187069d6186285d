"""``evaluate``'s figures with query expansion are those of a brute-force expansion loop (the
expectation over the orders of tied photos, as every headline figure)."""

import numpy as np

from engine.codes import hamming_reference, pack_codes, unpack_codes
from engine.models import create
from engine.sketch_input import sketch_input
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


def test_expanded_figures_match_a_brute_force_loop(shared_data):
    model = create("baseline", image_size=96, pretrained=True).eval()
    config = EvalConfig(classes=CLASSES, baseline=False, real_valued=False, expand=3)
    report = drain(evaluate(model, shared_data / "sketchy", config))
    assert report.expanded["m"] == 3
    expected = naive_expanded_map(model, shared_data / "sketchy", 3)
    assert abs(report.expanded["map_all"] - expected) < 1e-9
    assert report.expanded["map_all"] != report.metrics["map_all"]  # the expansion did something
    plain = drain(evaluate(model, shared_data / "sketchy", EvalConfig(classes=CLASSES, expand=0)))
    assert plain.expanded == {} and plain.metrics == report.metrics
