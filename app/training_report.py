"""Plain words for the training panel: a progress line, and the evaluation report of the new
model beside the active model's figures on the same data (an HTML table).

The table says on how many sketch queries and against how many photos it was measured, right
above the figures, and a test set too small to mean much says so (and no figure is marked best
on it): mAP 0.98 on 14 queries against 28 photos says little about a person's photos.
"""

from __future__ import annotations

import html
import logging
import re
from typing import Any

from app.progress import format_eta

log = logging.getLogger(__name__)

METRIC_NAMES = {"map_all": "mAP (all)"}
CUT_OFF_NAMES = {"map": "mAP", "p": "P", "acc": "acc"}  # map_28 is mAP@28
SMALL_QUERIES = 50  # fewer sketch queries than this, or
SMALL_GALLERY = 100  # fewer photos to rank than this: a test set too small to mean much


def metric_name(key: str) -> str:
    """``map_all`` reads mAP (all), ``map_28`` mAP@28, ``p_28`` P@28, ``acc_1`` acc@1."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if found := re.fullmatch(r"(map|p|acc)_(\d+)", key):
        kind, k = found.groups()
        return f"{CUT_OFF_NAMES[kind]}@{k}"
    return key


def small_test_set(protocol: dict[str, Any]) -> str:
    """Why the report's test set is too small to mean much, or ""."""
    queries, gallery = protocol.get("queries"), protocol.get("gallery")
    if not isinstance(queries, int) or not isinstance(gallery, int):
        return ""
    if queries >= SMALL_QUERIES and gallery >= SMALL_GALLERY:
        return ""
    return (
        f"A small test set: {queries} sketch queries against {gallery} photos (under "
        f"{SMALL_QUERIES} queries or {SMALL_GALLERY} photos). Figures this small vary a lot "
        "with the data chosen and say little about how the model finds your photos; "
        "evaluate on more classes or a larger data set to compare models."
    )


def describe_training(p: Any) -> str:
    """One line for a ``TrainProgress``: epoch/step, rate and ETA."""
    if p.phase == "prepare":
        return f"Preparing: {p.message}"
    parts = [f"Epoch {p.epoch}/{p.epochs}", f"step {p.step}/{p.steps_per_epoch}"]
    parts.append(f"{p.global_step}/{p.total_steps} in all")
    if p.phase == "cancelled":  # no rate or time left: nothing is running any more
        parts.append("cancelled, checkpoint saved")
        return "  ·  ".join(parts)
    if p.samples_per_s:
        parts.append(f"{p.samples_per_s:.1f} samples/s")
    if eta := format_eta(p.eta_s):
        parts.append(eta)
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
    small = small_test_set(proto)
    counts = (
        f"{proto.get('queries', '?')} sketch queries · a gallery of {proto.get('gallery', '?')} "
        "photos"
    )
    if codes := new.get("codes"):  # collapsed codes tie many photos: the figures say so
        counts += f" · {codes['distinct']} distinct codes among them"
    rows = [
        f"<tr><td colspan='{len(heads)}'><i>{html.escape(counts)}</i></td></tr>",
        "<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>",
    ]
    for key, value in new.get("metrics", {}).items():
        active_value = (active or {}).get("metrics", {}).get(key)
        cells = [value, active_value, new.get("random", {}).get(key), real.get(key)]
        if base:
            cells.append(base.get(key))
        best = value is not None and (active_value is None or value >= active_value)
        first = f"<b>{_cell(value)}</b>" if best and active and not small else _cell(value)
        text = [metric_name(key), first] + [_cell(c) for c in cells[1:]]
        rows.append("<tr>" + "".join(f"<td>{t}</td>" for t in text) + "</tr>")
    table = "<table border='1' cellspacing='0' cellpadding='3'>" + "".join(rows) + "</table>"
    if small:
        table = f"<p style='color:#8a4b00'><b>{html.escape(small)}</b></p>" + table
    classes = proto.get("classes")
    where = f" ({len(classes)} classes)" if classes else ""
    about = (
        f"<p>{html.escape(str(proto.get('layout', '')))} protocol on "
        f"{html.escape(str(proto.get('data', '')))}{where}, split "
        f"{html.escape(str(proto.get('split', '')))}: {proto.get('queries', '?')} sketch "
        f"queries, a gallery of {proto.get('gallery', '?')} photos; hit = "
        f"{html.escape(str(proto.get('hit', '')))}. {html.escape(str(proto.get('binary', '')))}."
        + (
            " Photos at equal distance count as in every order (the expected figure)."
            if new.get("file_order")
            else ""
        )
        + "</p>"
    )
    if active is None:
        about += f"<p><i>Measuring {html.escape(active_name)} on the same data…</i></p>"
    return about + table
