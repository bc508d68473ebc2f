"""notebooks/transformer_from_scratch.ipynb runs top to bottom (nbclient + ipykernel).

Skipped where nbclient, nbformat, ipykernel or matplotlib is missing. It takes about half
a minute on 2 CPU cores; the notebook trains the copy task itself.
"""

import re
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "transformer_from_scratch.ipynb"


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def test_notebook_executes_top_to_bottom_and_learns_the_copy_task():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError naming the failing cell
    seconds = time.perf_counter() - t0
    out = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "hand-written == layer: True" in out
    assert re.search(r"LayerNorm dx vs finite differences: relative error", out)
    exact = float(re.search(r"exact match on 1000 held-out sequences: ([\d.]+)%", out).group(1))
    assert exact >= 95.0, out[-2000:]
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "image/png" in o.get("data", {}))
    assert images == 3  # loss curve, cross-attention, decoder self-attention
    print(f"notebook executed in {seconds:.1f} s")


def test_committed_notebook_is_executed_and_small():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "commit the notebook executed"
    assert not any(o.output_type == "error" for c in code for o in c.outputs)
    assert NOTEBOOK.stat().st_size < 400_000
