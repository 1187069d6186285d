"""`sketch-search evaluate` on real data: the figures it prints; with --store the same figures
written into the checkpoint, whose weights and name stay as they were; with --rerank the
shortlist re-ranked by the model's exact distance (DSSA on QMUL-Shoe)."""

import json

import torch

from app.cli import main
from engine.models import create, read_checkpoint_info, save_checkpoint
from engine.store import SHIPPED_DIR, default_checkpoint


def test_evaluate_prints_and_stores_the_figures(shared_data, tmp_path, capsys):
    ckpt = tmp_path / "shipped-copy.safetensors"
    ckpt.write_bytes(default_checkpoint().read_bytes())
    before = read_checkpoint_info(ckpt)
    args = ["evaluate", "--model", str(ckpt), "--data", str(shared_data / "sketchy")]
    args += ["--classes", "airplane", "apple", "--no-baseline", "--json"]

    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert read_checkpoint_info(ckpt).metrics == before.metrics  # not stored without --store
    assert printed["protocol"]["queries"] > 0
    assert 0.0 <= printed["metrics"]["map_all"] <= 1.0

    assert main([*args, "--store"]) == 0
    stored_run = json.loads(capsys.readouterr().out)
    after = read_checkpoint_info(ckpt)
    assert after.metrics == stored_run["metrics"] == printed["metrics"]
    assert after.metrics != before.metrics  # two classes, not the shipped test-split figures
    assert after.metadata["model_id"] == before.metadata["model_id"]
    assert after.name == before.name


def test_evaluate_rerank_reports_the_shortlists_and_refuses_methods_without_one(
    shared_data, tmp_path, capsys
):
    torch.manual_seed(0)
    dssa = save_checkpoint(
        create("dssa", image_size=96, pretrained=False).eval(), tmp_path / "dssa.safetensors"
    )
    args = ["evaluate", "--data", str(shared_data / "shoes_v1"), "--no-baseline", "--json"]
    assert main([*args, "--model", str(dssa), "--rerank", "5", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    reranking = result["reranking"]
    gallery = reranking["protocol"]["gallery"]
    assert set(reranking) == {
        "binary",
        "reranked_top5",
        f"reranked_top{gallery}",  # a shortlist longer than the gallery is the whole gallery
        "holef_exhaustive",
        "file_order",
        "protocol",
    }
    assert set(reranking["file_order"]) == set(reranking) - {"file_order", "protocol"}
    # the re-ranking's Hamming figures are the evaluator's, measured through the same codes
    assert reranking["binary"]["acc_1"] == result["metrics"]["acc_1"]
    assert reranking["binary"]["acc_10"] == result["metrics"]["acc_10"]
    assert reranking["file_order"]["binary"] == result["file_order"]
    # re-ranking the whole gallery by HOLEF is the exhaustive HOLEF ranking
    assert reranking[f"reranked_top{gallery}"] == reranking["holef_exhaustive"]
    table = [a for a in args if a != "--json"]
    assert main([*table, "--model", str(dssa), "--rerank", "5"]) == 0  # the printed table
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Codes: ") and " distinct among the " in line for line in lines)
    assert any("reranked_top5" in line and "(file order: acc_1" in line for line in lines)

    baseline = [*args, "--model", str(default_checkpoint()), "--rerank"]
    assert main(baseline) == 2
    assert "no exact distance to re-rank by" in capsys.readouterr().err


def test_figures_on_a_data_set_it_never_trained_on_are_stored_beside_its_own(
    shared_data, tmp_path, capsys
):
    """dssa-chairs-64 measured on QMUL-Shoe with --store: its QMUL-Chair figures stay the main
    ones, the shoe figures are kept under their own key (they used to replace the main ones)."""
    ckpt = tmp_path / "chairs-copy.safetensors"
    ckpt.write_bytes((SHIPPED_DIR / "dssa-chairs-64.safetensors").read_bytes())
    before = read_checkpoint_info(ckpt)
    args = ["evaluate", "--model", str(ckpt), "--data", str(shared_data / "shoes_v1")]
    assert main([*args, "--no-baseline", "--json", "--store"]) == 0
    printed = json.loads(capsys.readouterr().out)
    after = read_checkpoint_info(ckpt)
    assert after.metrics == before.metrics  # the QMUL-Chair test figures
    stored = after.metadata["metrics"]["protocols"]["never_trained_shoes_v1"]
    assert stored["metrics"] == printed["metrics"]
    assert stored["protocol"]["data"].endswith("shoes_v1")
    assert printed["metrics"]["acc_10"] > printed["random"]["acc_10"]
