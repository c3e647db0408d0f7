"""The pipeline grid, the notebook sources, the executed notebooks and `ccs run`."""
import json
import re
from pathlib import Path

import jupytext
import nbformat
import pytest
from typer.testing import CliRunner

from ccs import models, pipeline
from ccs.cli import app

RUNS = pipeline.runs()


def test_grid_names_known_models_and_existing_notebooks():
    assert RUNS, "pipeline.yaml lists no runs"
    for run in RUNS:
        models.spec(run.model)
        assert run.source.is_file(), run.source


def test_toc_is_written_from_the_grid():
    assert pipeline.TOC.read_text() == pipeline.toc_text(), "run `ccs toc`"
    files = json.dumps(pipeline.toc())
    for run in RUNS:
        assert str(run.notebook.relative_to(pipeline.ROOT).with_suffix("")) in files


@pytest.mark.parametrize("source", sorted({r.source for r in RUNS}), ids=lambda p: p.stem)
def test_notebook_source_has_a_parameters_cell_with_a_model(source):
    nb = jupytext.read(source)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "hide-input" in tagged[0].metadata["tags"]
    assert re.search(r"^model\s*=", tagged[0].source, re.M)


def test_book_runs_holds_exactly_the_grid():
    on_disk = {p.relative_to(pipeline.ROOT) for p in (pipeline.ROOT / "book" / "runs").rglob("*.ipynb")}
    assert on_disk == {r.notebook.relative_to(pipeline.ROOT) for r in RUNS}, "run `make book`"


@pytest.mark.parametrize("run", RUNS, ids=lambda r: f"{r.model}/{r.experiment}")
def test_executed_notebooks_keep_no_machine_paths(run):
    text = run.notebook.read_text()
    for private in (str(Path.home()), str(pipeline.ROOT), "/tmp/"):
        assert private not in text, f"{private} in {run.notebook.name}"
    nb = nbformat.read(run.notebook, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "hide-input" in injected[0].metadata["tags"]
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


def test_failed_run_leaves_finished_work_in_place(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "broken.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"\n\n# %%\nraise RuntimeError("boom")\n')
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    run = pipeline.Run(models.TINY, "broken")
    run.notebook.parent.mkdir(parents=True)
    run.notebook.write_text("previous result")
    with pytest.raises(Exception, match="boom"):
        pipeline.execute(run, progress=False)
    assert run.notebook.read_text() == "previous result"
    assert list(run.notebook.parent.iterdir()) == [run.notebook]  # no half-written leftovers


def test_run_command_rejects_unknown_model_before_starting_a_kernel():
    result = CliRunner().invoke(app, ["run", "ViT-Z-99", "model_card"])
    assert result.exit_code != 0
    assert "Unknown model 'ViT-Z-99'" in result.output
