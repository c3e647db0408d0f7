"""The pipeline grid, the notebook sources, the executed notebooks and `ccs run`."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
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


def test_toc_puts_the_prose_parts_around_the_runs(tmp_path):
    grid = tmp_path / "pipeline.yaml"
    grid.write_text("models: [ccs-tiny]\nexperiments:\n  model_card:\n"
                    "prose:\n  before:\n    - {caption: The method, chapters: [book/method]}\n"
                    "  after:\n    - {caption: Reference, chapters: [book/glossary, book/bibliography]}\n")
    toc = pipeline.toc(grid)
    assert toc["root"] == "book/intro"
    assert [(p["caption"], [c["file"] for c in p["chapters"]]) for p in toc["parts"]] == [
        ("The method", ["book/method"]), ("Runs: ccs-tiny", ["book/runs/ccs-tiny/model_card"]),
        ("Reference", ["book/glossary", "book/bibliography"])]
    grid.write_text("models: [ccs-tiny]\nexperiments:\n  model_card:\nprose: [book/reproduce]\n")  # a plain list
    assert pipeline.toc(grid)["parts"][-1] == {"caption": "Using the book", "chapters": [{"file": "book/reproduce"}]}
    for part in pipeline.toc()["parts"]:  # every prose page of this book's grid exists
        for chapter in part["chapters"]:
            assert list(pipeline.ROOT.glob(chapter["file"] + ".*")), chapter["file"]


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


@pytest.fixture
def mini(tmp_path, monkeypatch):
    """A repository of its own: a grid of two small notebooks for ccs-tiny (one fails on demand)."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "small.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"\nimages = 10\nbackend = "embedding"\n\n'
        '# %%\nimport json\njson.dump({"images": images}, open("small.json", "w"))\nprint(images * 2)\n')
    (tmp_path / "notebooks" / "broken.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"\n\n# %%\nraise RuntimeError("boom")\n')
    (tmp_path / "pipeline.yaml").write_text(
        "models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 3}\n  broken:\n")
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    monkeypatch.setattr(pipeline, "GRID", tmp_path / "pipeline.yaml")
    return tmp_path


def test_failed_run_leaves_finished_work_in_place(mini):
    run = pipeline.find(models.TINY, "broken")
    run.notebook.parent.mkdir(parents=True)
    run.notebook.write_text("previous result")
    with pytest.raises(Exception, match="boom"):
        pipeline.execute(run, progress=False)
    assert run.notebook.read_text() == "previous result"
    assert list(run.notebook.parent.iterdir()) == [run.notebook]  # no half-written leftovers
    assert not list((mini / "runs-tmp").iterdir())


def test_pages_are_exact_and_content_addressed(mini):
    run = pipeline.find(models.TINY, "small")
    assert [r.experiment for r in pipeline.stale()] == ["small", "broken"]
    page = pipeline.execute(run, progress=False)
    assert page == run.notebook and json.loads((page.parent / "small.json").read_text()) == {"images": 3}
    nb = nbformat.read(page, as_version=4)
    assert [c.id for c in nb.cells] == [f"c{i:03d}" for i in range(len(nb.cells))]
    assert set(nb.metadata["papermill"]) == {"parameters"}  # no times, durations or paths
    assert nb.metadata["ccs"]["digest"] == pipeline.digest(run) and pipeline.is_current(run)
    first = page.read_bytes()
    pipeline.execute(run, progress=False)
    assert page.read_bytes() == first  # a re-run of the same thing writes the same bytes
    assert [r.experiment for r in pipeline.stale()] == ["broken"]
    # a changed parameter makes exactly its page stale
    (mini / "pipeline.yaml").write_text(
        "models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 4}\n  broken:\n")
    assert [r.experiment for r in pipeline.stale()] == ["small", "broken"]
    stamp, done = pipeline.stamp(pipeline.find(models.TINY, "small"))
    assert not done.exists() or stamp.stat().st_mtime >= done.stat().st_mtime  # Snakemake re-runs the page
    (mini / "pipeline.yaml").write_text(
        "models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 3}\n  broken:\n")
    stamp, done = pipeline.stamp(run)
    assert stamp.stat().st_mtime == 0 and done.is_file()  # current again: never newer than anything


def test_other_parameters_never_overwrite_a_page(mini):
    run = pipeline.find(models.TINY, "small")
    page = pipeline.execute(run, progress=False)
    before = page.read_bytes()
    out = pipeline.execute(run, progress=False, extra={"images": 7})
    assert page.read_bytes() == before
    assert out.is_relative_to(mini / "outputs") and json.loads((out.parent / "small.json").read_text()) == {"images": 7}
    assert pipeline.execute(run, progress=False, extra={"images": 3}) == page  # the grid's own value


@pytest.mark.parametrize("extra, message", [
    ({"imagez": 64}, "has no parameter 'imagez'; its parameters: model, images, backend"),
    ({"images": "abc"}, "images must be a int"),
    ({"images": -5}, "images must be at least 1"),
    ({"images": True}, "images must be a int"),
    ({"backend": "gpt"}, "backend must be 'embedding' or 'openai'"),
])
def test_parameters_are_checked_before_a_kernel_starts(mini, extra, message, monkeypatch):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    with pytest.raises(pipeline.ParameterError, match=re.escape(message)):
        pipeline.execute(pipeline.find(models.TINY, "small"), extra=extra)
    assert not (mini / "book").exists() and not (mini / "outputs").exists()


def test_grid_parameters_and_notebook_defaults_pass_the_checks():
    for run in RUNS:
        pipeline.check_parameters(run.source, {"model": run.model, **run.parameters})
        pipeline.check_parameters(run.source, pipeline.notebook_parameters(run.source))


def test_missing_weights_fail_before_a_kernel_starts(mini, monkeypatch):
    monkeypatch.setenv("CCS_WEIGHTS", str(mini))
    result = CliRunner().invoke(app, ["run", "ViT-B-32-OpenAI", "small"])
    assert result.exit_code == 1 and result.output.startswith("error: No weights for ViT-B-32-OpenAI")
    assert not (mini / "book").exists() and not (mini / "outputs").exists()


def test_run_command_rejects_unknown_model_before_starting_a_kernel():
    result = CliRunner().invoke(app, ["run", "ViT-Z-99", "model_card"])
    assert result.exit_code == 1 and result.output.startswith("error: Unknown model 'ViT-Z-99'")


def _copy_of_this_tree(dest: Path) -> Path:
    """The tracked files of this repository as they are now, copied the way a clone writes them
    (fresh file times, in git's order): what a fresh clone of this commit holds."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=pipeline.ROOT, capture_output=True, check=True,
                           text=True).stdout.split("\0")
    for f in filter(None, files):
        src = pipeline.ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest / f)
    return dest


def _in(repo: Path, *cmd, **kw):
    env = {**os.environ, "PYTHONPATH": str(repo / "lib")}  # the copy's library, not this checkout's
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_a_fresh_clone_runs_nothing(tmp_path):
    repo = _copy_of_this_tree(tmp_path / "clone")
    ccs = str(Path(sys.executable).with_name("ccs"))
    assert _in(repo, ccs, "stale").stdout == "", "pages out of date: run `make book` and commit them"
    out = _in(repo, str(Path(sys.executable).with_name("snakemake")), "-n", "--quiet", "rules",
              "--rerun-triggers", "mtime")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    # a changed parameter re-runs exactly the page it feeds
    grid = (repo / "pipeline.yaml").read_text().replace("seeds: 5, clips: 500", "seeds: 5, clips: 400")
    (repo / "pipeline.yaml").write_text(grid)
    assert _in(repo, ccs, "stale").stdout.split() == ["book/runs/ccs-tiny/video.ipynb"]


@pytest.mark.slow
def test_ctrl_c_during_the_book_run_keeps_the_page(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(pipeline.ROOT / "lib", repo / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(pipeline.ROOT / "Snakefile", repo / "Snakefile")
    (repo / "notebooks").mkdir()
    source = repo / "notebooks" / "sleepy.py"
    source.write_text('# %% tags=["parameters"]\nmodel = "x"\n\n'
                      '# %%\nimport os, time\ntime.sleep(float(os.environ.get("CCS_TEST_SLEEP", 0)))\nprint("done")\n')
    (repo / "pipeline.yaml").write_text("models: [ccs-tiny]\nexperiments:\n  sleepy:\n")
    (repo / "_toc.yml").write_text("")
    snakemake = [str(Path(sys.executable).with_name("snakemake")), "--cores", "1", "--quiet", "rules",
                 "--keep-incomplete", "--rerun-incomplete", "--rerun-triggers", "mtime"]  # as `make book`
    env = {**os.environ, "PYTHONPATH": str(repo / "lib"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    assert subprocess.run(snakemake, cwd=repo, env=env, capture_output=True).returncode == 0
    page = repo / "book" / "runs" / "ccs-tiny" / "sleepy.ipynb"
    first = page.read_bytes()
    source.write_text(source.read_text() + "# changed\n")  # stale now: the next run executes it
    log = open(tmp_path / "snakemake.log", "w")  # a file, not a pipe nobody reads (which could fill and block)
    proc = subprocess.Popen(snakemake, cwd=repo, env={**env, "CCS_TEST_SLEEP": "120"}, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline and not list((repo / "runs-tmp").glob("*/executed.ipynb")):
        time.sleep(0.2)  # papermill writes executed.ipynb as soon as the kernel runs
    assert list((repo / "runs-tmp").glob("*/executed.ipynb")), "the notebook never started"
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    try:
        proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the pipeline did not stop on Ctrl-C:\n" + (tmp_path / "snakemake.log").read_text()[-3000:])
    log.close()
    assert proc.returncode != 0 and page.read_bytes() == first
    rerun = subprocess.run(snakemake, cwd=repo, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert page.read_bytes() != first and "done" in page.read_text()
    assert not list((repo / "runs-tmp").iterdir())
