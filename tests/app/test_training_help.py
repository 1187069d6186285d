"""The Train panel for someone who has not read the papers: every option says what it does and
the paper's value, the evaluation says how many queries and photos its figures come from (and
when that is too few to mean much), run names are whole, the legend leaves the curves
visible, and no time left is promised once a run stops."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRectF

from app.gui.train.curve_plot import CurvePlot
from app.gui.train.form import TrainingForm
from app.gui.train.history import COLUMNS, RunHistory
from app.training_report import comparison_html, describe_training, metric_name
from engine.models import list_methods
from tests.app.conftest import shared_or_skip
from training import EvalConfig, TrainProgress, evaluate
from training.runs import new_run


def test_every_option_of_every_method_has_a_one_line_tooltip(qtbot):
    form = TrainingForm()
    qtbot.addWidget(form)
    for method in list_methods():
        form.method_combo.setCurrentText(method)
        assert form.method() == method
        for box in (form.model_options, form.options_box):
            for name, widget in box.widgets.items():
                tip = widget.toolTip()
                assert tip, f"{method}: {box.title()} '{name}' has no tooltip"
                assert "\n" not in tip and tip.endswith(".") and "Default:" in tip
    form.method_combo.setCurrentText("dssa")
    assert "paper: 5e-4" in form.options_box.widgets["holef_lambda"].toolTip()
    form.method_combo.setCurrentText("baseline")
    assert "hidden layer" in form.model_options.widgets["hidden"].toolTip()
    for name in ("w_class", "w_pair", "w_quant"):
        assert form.options_box.widgets[name].toolTip()


def test_a_small_test_set_is_reported_with_its_counts_and_p_at_k_within_the_gallery(model):
    """A real evaluation on two Sketchy classes: about a dozen test photos, so the figures say
    on how little they stand, and P@k takes k = the gallery, not 200 (before: P@200 = 0.04 in
    every column, random included)."""
    sketchy = shared_or_skip("sketchy")
    config = EvalConfig(classes=("airplane", "apple"), real_valued=False, baseline=False)
    run = evaluate(model, sketchy, config)
    while True:
        try:
            next(run)
        except StopIteration as stop:
            report = stop.value.to_json()
            break
    gallery, queries = report["protocol"]["gallery"], report["protocol"]["queries"]
    assert gallery < 200
    assert set(report["metrics"]) == {"map_all", f"map_{gallery}", f"p_{gallery}"}
    assert report["random"][f"p_{gallery}"] == pytest.approx(0.5, abs=0.2)  # 2 classes
    html = comparison_html(report, report, "baseline-64 (baseline, 64-bit)")
    assert f"{queries} sketch queries · a gallery of {gallery} photos" in html
    assert "A small test set" in html and "<b>0." not in html  # nothing marked best on it
    assert f"<td>P@{gallery}</td>" in html and "P@200" not in html


def test_a_large_enough_test_set_has_no_warning_and_marks_the_better_figure():
    report = {
        "metrics": {"map_all": 0.3, "map_200": 0.35, "p_200": 0.3},
        "random": {"map_all": 0.02, "map_200": 0.02, "p_200": 0.02},
        "protocol": {"queries": 520, "gallery": 520},
    }
    worse = {"metrics": {"map_all": 0.2, "map_200": 0.2, "p_200": 0.2}}
    html = comparison_html(report, worse, "other")
    assert "A small test set" not in html and "<b>0.3000</b>" in html
    assert "520 sketch queries · a gallery of 520 photos" in html
    assert [metric_name(k) for k in ("map_all", "map_200", "p_28", "acc_10")] == [
        "mAP (all)",
        "mAP@200",
        "P@28",
        "acc@10",
    ]


def test_run_names_are_whole_in_the_runs_table(qtbot, tmp_path):
    data = tmp_path / "a data set folder with a rather long name" / "sketchy"
    data.mkdir(parents=True)
    records = [new_run(method, data, {"method": method}) for method in ("baseline", "semi3")]
    history = RunHistory()
    qtbot.addWidget(history)
    history.resize(700, 240)
    history.show()
    qtbot.waitExposed(history)
    history.refresh(None)
    table = history.table
    column = COLUMNS.index("Run")
    metrics = table.fontMetrics()
    for row in range(table.rowCount()):
        name = table.item(row, column).text()
        assert name in {r.name for r in records}
        assert table.columnWidth(column) >= max(
            table.sizeHintForColumn(column), metrics.horizontalAdvance(name)
        )
    assert table.columnViewportPosition(column) == 0  # first, in view
    data_cell = table.item(0, COLUMNS.index("Data"))
    assert data_cell.text() == "sketchy" and str(data) in data_cell.toolTip()


@pytest.mark.parametrize("width", [700, 300])
def test_the_legend_never_covers_the_curves(qtbot, width):
    plot = CurvePlot("Loss terms", "step")
    qtbot.addWidget(plot)
    plot.resize(width, 220)
    for name in ("total", "pair", "quantisation", "class", "balance"):
        for step in range(20):
            plot.add_point(name, step, 1.0 / (step + 1) + len(name) / 10)
    area, boxes = plot.plot_layout()
    assert len(boxes) == 5 and area.width() > 100 and area.height() > 40
    for box in boxes:
        assert not box.intersects(area), (box, area)
        assert QRectF(plot.rect()).contains(box)


def test_a_cancelled_run_promises_no_time_left():
    common = dict(epoch=1, epochs=3, step=4, steps_per_epoch=10, global_step=4, total_steps=30)
    running = TrainProgress(phase="step", samples_per_s=12.0, eta_s=95.0, **common)
    assert "left" in describe_training(running)
    cancelled = TrainProgress(phase="cancelled", samples_per_s=12.0, eta_s=95.0, **common)
    text = describe_training(cancelled)
    assert "cancelled" in text and "left" not in text and "samples/s" not in text


def test_the_report_names_the_distinct_codes_and_the_tie_rule():
    report = {
        "metrics": {"acc_1": 0.04, "acc_10": 0.35},
        "file_order": {"acc_1": 0.026, "acc_10": 0.365},
        "codes": {"distinct": 26, "gallery": 115, "tie_at_hit": 14.5, "hit_at_distance_0": 45},
        "random": {"acc_1": 0.009, "acc_10": 0.087},
        "protocol": {"queries": 115, "gallery": 115},
    }
    html = comparison_html(report, None, "other")
    assert "a gallery of 115 photos · 26 distinct codes among them" in html
    assert "in every order (the expected figure)" in html
