"""``query --expand M`` and ``--hamming-only``: the JSON says whether the query was expanded and
ranked asymmetrically, and the results are the library's photos in the order of the distance
that ranked them."""

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

    def query(*flags):
        assert main(["query", str(sketch), "--top", "20", "--json", *flags, *library]) == 0
        return json.loads(capsys.readouterr().out)

    default = query()
    assert default["expanded"] == DEFAULT_EXPAND  # the app's default applies without the flag
    assert default["asymmetric"]  # a category-level model ranks by the asymmetric distance
    scores = [r["score"] for r in default["results"]]
    assert scores == sorted(scores) and len(scores) == 20
    unexpanded = query("--expand", "0")
    assert unexpanded["expanded"] == 0 and unexpanded["asymmetric"]
    assert [r["score"] for r in unexpanded["results"]] != scores

    plain = query("--expand", "0", "--hamming-only")
    assert plain["expanded"] == 0 and not plain["asymmetric"]
    assert "expand" not in plain["timings_ms"]
    assert all("score" not in r for r in plain["results"])
    expanded = query("--expand", "5", "--hamming-only")
    assert expanded["expanded"] == 5 and expanded["timings_ms"]["expand"] > 0
    distances = [r["distance"] for r in expanded["results"]]
    assert distances == sorted(distances) and len(distances) == 20
    assert {r["path"] for r in expanded["results"]} == {r["path"] for r in plain["results"]}
    assert distances != [r["distance"] for r in plain["results"]]  # measured to the new code

    for flags in ([], ["--hamming-only"]):
        assert main(["query", str(sketch), "--expand", "-1", *flags, *library]) == EXIT_ERROR
        assert "m >= 0" in capsys.readouterr().err
