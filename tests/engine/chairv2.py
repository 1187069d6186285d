"""The ChairV2 stroke files of ../shared/data (``chairv2_strokes/strokes.jsonl.gz``), read for
tests only: the app never reads them."""

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

from engine.strokes import Point, Stroke


def read_chairv2(path: str | Path) -> Iterator[tuple[str, list[Stroke]]]:
    """(key, strokes) of each line: ``{"key", "points": [[x, y, pen], ...]}``, pen = 1 ends a
    stroke."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            obj = json.loads(line)
            strokes, current = [], []
            for x, y, pen in obj["points"]:
                current.append(Point(float(x), float(y)))
                if pen >= 0.5:
                    strokes.append(Stroke(tuple(current)))
                    current = []
            if current:
                strokes.append(Stroke(tuple(current)))
            yield str(obj["key"]), strokes
