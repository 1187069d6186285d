"""Plain words for the training panel: a progress line, and the evaluation report of the new
model beside the active model's figures on the same data (an HTML table)."""

from __future__ import annotations

import html
import logging
from typing import Any

from app.gui.library_panel import format_eta

log = logging.getLogger(__name__)

METRIC_NAMES = {
    "map_all": "mAP (all)",
    "map_200": "mAP@200",
    "p_200": "P@200",
    "acc_1": "acc@1",
    "acc_10": "acc@10",
}


def describe_training(p: Any) -> str:
    """One line for a ``TrainProgress``: epoch/step, rate and ETA."""
    if p.phase == "prepare":
        return f"Preparing: {p.message}"
    parts = [f"Epoch {p.epoch}/{p.epochs}", f"step {p.step}/{p.steps_per_epoch}"]
    parts.append(f"{p.global_step}/{p.total_steps} in all")
    if p.samples_per_s:
        parts.append(f"{p.samples_per_s:.1f} samples/s")
    if eta := format_eta(p.eta_s):
        parts.append(eta)
    if p.phase == "cancelled":
        parts.append("cancelled, checkpoint saved")
    return "  ·  ".join(parts)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def comparison_html(new: dict[str, Any], active: dict[str, Any] | None, active_name: str) -> str:
    """The new model's report (as ``sketch-search evaluate`` gives it) beside the active model's
    figures on the same data; ``active`` None while they are being computed."""
    proto = new.get("protocol", {})
    real = new.get("real_valued", {})
    base = new.get("baseline", {})
    heads = ["metric", "new model", html.escape(active_name), "random", "new, real-valued"]
    if base:
        heads.append("HOG baseline")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>"]
    for key, value in new.get("metrics", {}).items():
        active_value = (active or {}).get("metrics", {}).get(key)
        cells = [value, active_value, new.get("random", {}).get(key), real.get(key)]
        if base:
            cells.append(base.get(key))
        best = value is not None and (active_value is None or value >= active_value)
        first = f"<b>{_cell(value)}</b>" if best and active else _cell(value)
        text = [METRIC_NAMES.get(key, key), first] + [_cell(c) for c in cells[1:]]
        rows.append("<tr>" + "".join(f"<td>{t}</td>" for t in text) + "</tr>")
    table = "<table border='1' cellspacing='0' cellpadding='3'>" + "".join(rows) + "</table>"
    classes = proto.get("classes")
    where = f" ({len(classes)} classes)" if classes else ""
    about = (
        f"<p>{html.escape(str(proto.get('layout', '')))} protocol on "
        f"{html.escape(str(proto.get('data', '')))}{where}, split "
        f"{html.escape(str(proto.get('split', '')))}: {proto.get('queries', '?')} sketch "
        f"queries, a gallery of {proto.get('gallery', '?')} photos; hit = "
        f"{html.escape(str(proto.get('hit', '')))}. {html.escape(str(proto.get('binary', '')))}."
        "</p>"
    )
    if active is None:
        about += f"<p><i>Measuring {html.escape(active_name)} on the same data…</i></p>"
    return about + table
