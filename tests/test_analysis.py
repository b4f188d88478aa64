import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from toolkit.cli import main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_xmt_analyze_writes_csv_and_figures(random_run, tmp_path):
    runner = CliRunner()
    for kind, csv, figure in [
        ("attention", "attention_mass", "attention_overlays"),
        ("attribute", "attribution", "attribution_shares"),
    ]:
        args = ["analyze", kind, str(random_run), "--out", str(tmp_path / kind)] + (
            ["--limit", "3", "--steps", "8"] if kind == "attribute" else ["--limit", "3"]
        )
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        assert (tmp_path / kind / f"{csv}.csv").is_file() and (tmp_path / kind / f"{figure}.png").is_file()
    mass = pd.read_csv(tmp_path / "attention" / "attention_mass.csv")
    assert len(mass) == 2 * 4 and mass["text_to_image_mass"].between(0, 1).all()
    attr = pd.read_csv(tmp_path / "attribute" / "attribution.csv")
    assert ((attr["image_share"] + attr["text_share"]) - 1).abs().max() < 1e-9


@pytest.mark.slow
def test_xmt_analyze_probe(random_run, tmp_path):
    result = CliRunner().invoke(main, ["analyze", "probe", str(random_run), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "probing.csv")
    assert set(df["setting"]) == {"held-out categories", "cross-modal", "grounded->vision_only"}
    assert set(df["modality"]) >= {"text", "image", "text->image", "image->text"}
    assert (tmp_path / "probing.png").is_file() and (tmp_path / "probing.pdf").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_execute_top_to_bottom(path, random_run, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("XMT_RUN_DIR", str(random_run))
    monkeypatch.setenv("XMT_OUT", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(path, as_version=4)
    assert not any("def " in c.source for c in nb.cells if c.cell_type == "code")  # notebooks define no library code
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    assert list(tmp_path.glob("*.png")), f"{path.name} wrote no figure"
    json.dumps(nbformat.writes(nb))
