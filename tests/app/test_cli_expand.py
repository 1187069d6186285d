"""``query --expand M``: the JSON says whether the query was expanded, and the results are the
library's photos ranked by their distance to the expanded code."""

import json
import shutil

from app.cli import EXIT_ERROR, main
from engine.defaults import DEFAULT_EXPAND


def test_query_expand_on_the_command_line(shared_data, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted((shared_data / "sketchy" / "photos").glob("*/*.jpg"))[::97][:20]:
        shutil.copy(p, photos / f"{p.parent.name}_{p.name}")
    library = ["--library", str(tmp_path / "lib"), "--model", "baseline"]
    assert main(["index", str(photos), "--json", *library]) == 0
    capsys.readouterr()
    sketch = sorted((shared_data / "sketchy" / "sketches" / "cup").glob("*.png"))[0]

    assert main(["query", str(sketch), "--top", "20", "--json", *library]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["expanded"] == DEFAULT_EXPAND  # the app's default applies without the flag
    assert main(["query", str(sketch), "--top", "20", "--expand", "0", "--json", *library]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["expanded"] == 0 and "expand" not in plain["timings_ms"]
    assert main(["query", str(sketch), "--top", "20", "--expand", "5", "--json", *library]) == 0
    expanded = json.loads(capsys.readouterr().out)
    assert expanded["expanded"] == 5 and expanded["timings_ms"]["expand"] > 0
    distances = [r["distance"] for r in expanded["results"]]
    assert distances == sorted(distances) and len(distances) == 20
    assert {r["path"] for r in expanded["results"]} == {r["path"] for r in plain["results"]}
    assert distances != [r["distance"] for r in plain["results"]]  # measured to the new code

    assert main(["query", str(sketch), "--expand", "-1", *library]) == EXIT_ERROR
    assert "m >= 0" in capsys.readouterr().err
