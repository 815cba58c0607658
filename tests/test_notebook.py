"""notebooks/explore.ipynb runs top to bottom (nbclient, kernel python3 of this environment, offline)."""
from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("panel")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "explore.ipynb"


def test_explore_notebook_runs(tmp_path, monkeypatch):
    from bwloader_core.demo import write_demo_collection
    root = tmp_path / "data"
    write_demo_collection(root, n_tracks=3, chrom_sizes={"chr1": 300_000, "chr2": 200_000}, seed=3)
    monkeypatch.setenv("BWLOADER_DATA", str(root))           # the kernel inherits it
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    assert f"data root: {root.resolve()}" in text
    assert "values (8, 200, 3) sequences (8, 2000, 4)" in text
    assert "format_version: 1" in text and "batch_size: 8" in text
    shown = [o for o in nb.cells[3].outputs if o.get("output_type") in ("display_data", "execute_result")]
    assert shown, "the dashboard cell displays nothing"
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
