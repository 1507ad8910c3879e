"""examples/notebook.ipynb, executed cell by cell in a real Jupyter kernel (nbclient + ipykernel)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import ROOT

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")


def test_the_example_notebook_runs_in_a_kernel(tmp_path: Path) -> None:
    notebook = nbformat.read(ROOT / "examples" / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # a cell that raises fails here, with the cell and its traceback
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "best trial" in text and "2 trials, best val_accuracy" in text
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the search shows a notebook progress bar (tqdm's widget)"
    study = optuna.load_study(study_name="notebook-digits", storage=f"sqlite:///{tmp_path / 'notebook.db'}")
    states = [t.state for t in study.trials]  # ASHA pauses some after 1 epoch; the last slot finishes one
    assert len(states) == 4 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert states[-1] == TrialState.COMPLETE
    assert len(list((tmp_path / "notebook-data").glob("*.npz"))) == 1  # the arrays, saved next to the study
