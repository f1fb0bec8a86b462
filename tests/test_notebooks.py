"""The notebooks in experiments/notebooks run top to bottom (at toy size: TSNEJAX_SMOKE=1), and
their stored outputs stay small (issue #20)."""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the test extras (nbformat) are not installed")
nbclient = pytest.importorskip("nbclient", reason="the test extras (nbclient) are not installed")

NOTEBOOKS = sorted((Path(__file__).parents[1] / "experiments" / "notebooks").glob("*.ipynb"))
#: Largest stored notebook (outputs included), bytes.
MAX_BYTES = 400_000


def test_there_are_at_least_three_notebooks():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_at_smoke_size(path, tmp_path, monkeypatch):
    monkeypatch.setenv("TSNEJAX_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_notebook_is_executed_and_small(path):
    assert os.path.getsize(path) < MAX_BYTES, f"{path.name}: clear or shrink its outputs"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.name} is not fully executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
