"""Every paper-figure script runs in --smoke mode and writes its PNG and CSV."""

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "paper_figures"
SCRIPTS = sorted(ROOT.glob("fig*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_figure_smoke(script, tmp_path):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--smoke", "--out", str(tmp_path)]) == 0
    png, table = tmp_path / f"{script.stem}.png", tmp_path / f"{script.stem}.csv"
    assert png.stat().st_size > 10_000
    rows = list(csv.DictReader(open(table)))
    assert rows and all(r["kl"] for r in rows)
