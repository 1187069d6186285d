"""PairBatches: the sketch/photo training batches shared by the baseline, DSH and Semi3-Net
procedures, on real Sketchy drawings and photos."""

import numpy as np
import torch

from training.arrays import photo_batch, read_photo, read_sketch, sketch_batch
from training.augment import PairBatches

SIZE = 96


def _arrays(shared_data):
    root = shared_data / "sketchy"
    sketch_paths = sorted((root / "sketches" / "guitar").glob("*.png"))[:3]
    photo_paths = sorted((root / "photos" / "guitar").glob("*.jpg"))[:4]
    sketches = np.stack([read_sketch(p, SIZE) for p in sketch_paths])
    photos = np.stack([read_photo(p, SIZE) for p in photo_paths])
    return sketches, photos


def test_plain_batches_pick_the_indexed_rows(shared_data):
    sketches, photos = _arrays(shared_data)
    s, p = PairBatches(SIZE, augment=False)(sketches, photos, [2, 0], [3, 1, 1])
    torch.testing.assert_close(s, sketch_batch(sketches[[2, 0]]))
    torch.testing.assert_close(p, photo_batch(photos[[3, 1, 1]]))


def test_augmented_batches_keep_shapes_and_range_and_change_the_pixels(shared_data):
    sketches, photos = _arrays(shared_data)
    torch.manual_seed(0)
    s, p = PairBatches(SIZE, augment=True)(sketches, photos, [0, 1, 2], [0, 1])
    assert s.shape == (3, 1, SIZE, SIZE) and p.shape == (2, 3, SIZE, SIZE)
    assert s.dtype == p.dtype == torch.float32
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0
    assert not torch.equal(p, photo_batch(photos[[0, 1]]))
    assert not torch.equal(s, sketch_batch(sketches[[0, 1, 2]]))
