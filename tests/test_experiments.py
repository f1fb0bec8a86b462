"""Smoke runs of the experiment scripts (tiny settings; the full runs write docs/results)."""

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_optimizer_ablation_smoke(tmp_path):
    ablation = _load("optimizer_ablation")
    args = ["--smoke", "--out", str(tmp_path), "--optimizer", "classic", "adam:learning_rate=2"]
    assert ablation.main(args) == 0
    rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
    assert [r["optimizer"] for r in rows] == ["classic", "adam:learning_rate=2"]
    assert all(float(r["kl_exact"]) < 2.0 and float(r["knn_accuracy"]) > 0.9 for r in rows)
    curves = list(csv.DictReader(open(tmp_path / "kl_curves.csv")))
    assert len(curves) == 2 * 10  # KL every 10 of 100 iterations, per optimizer
    assert (tmp_path / "optimizer_ablation.png").stat().st_size > 10_000


@pytest.mark.slow  # 25-37 s cold; test_diff.py covers the hypergradients
def test_hypergradient_schedule_smoke(tmp_path):
    import json

    mod = _load("hypergradient_schedule")
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["tuned"]["kl"] <= s["kl_default_schedule"]  # descent from the default point
    assert s["grid_points"] == 4 and (tmp_path / "hypergradient_schedule.png").exists()


@pytest.mark.slow  # 25-37 s cold; test_diff.py covers the hypergradients
def test_perplexity_sensitivity_smoke(tmp_path):
    import json

    mod = _load("perplexity_sensitivity")
    assert mod.main(["--smoke", "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    mid = s["rows"][1]
    assert {"dkl_dperplexity", "fd_local_kl", "dsoft_dperplexity", "nn_precision_10"} <= set(mid)
    assert mid["dkl_dperplexity"] < 0 and mid["fd_sweep_kl"] < 0  # KL falls as perplexity grows
    assert set(s["agreement"]) == {"openTSNE (N)", "N/4"}
