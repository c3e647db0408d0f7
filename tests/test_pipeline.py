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
    grid.write_text(
        "models: [ccs-tiny]\nexperiments:\n  model_card:\n"
        "prose:\n  before:\n    - {caption: The method, chapters: [book/method]}\n"
        "  after:\n    - {caption: Reference, chapters: [book/glossary, book/bibliography]}\n"
    )
    toc = pipeline.toc(grid)
    assert toc["root"] == "book/intro"
    assert [(p["caption"], [c["file"] for c in p["chapters"]]) for p in toc["parts"]] == [
        ("The method", ["book/method"]),
        ("Runs: ccs-tiny", ["book/runs/ccs-tiny/model_card"]),
        ("Reference", ["book/glossary", "book/bibliography"]),
    ]
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
        '# %% tags=["parameters"]\nmodel = "x"  # [model]\nimages = 10  # [at least 1] images\n'
        'backend = "embedding"  # [embedding | openai]\n\n'
        '# %%\nimport json\njson.dump({"images": images}, open("small.json", "w"))\nprint(images * 2)\n'
    )
    (tmp_path / "notebooks" / "broken.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"\n\n# %%\nraise RuntimeError("boom")\n'
    )
    (tmp_path / "pipeline.yaml").write_text(
        "models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 3}\n  broken:\n"
    )
    monkeypatch.setattr(pipeline.paths, "ROOT", tmp_path)  # the one module that holds the paths
    monkeypatch.setattr(pipeline.paths, "GRID", tmp_path / "pipeline.yaml")
    return tmp_path


def test_a_patched_pipeline_name_is_patched_where_it_is_looked_up(tmp_path, monkeypatch):
    """`pipeline.NAME` is read from the module of ccs.pipeline that owns it, and a patch of it is made
    there: a test that moves `pipeline.ROOT` moves every path, and one that replaces `pipeline._alive`
    replaces it for `clear_stale_lock`."""
    from ccs.pipeline import locks, paths

    root, alive = paths.ROOT, locks._alive
    monkeypatch.setattr(pipeline, "ROOT", tmp_path)
    assert paths.ROOT == pipeline.ROOT == tmp_path
    assert pipeline.Run(models.TINY, "x").notebook == tmp_path / "book" / "runs" / models.TINY / "x.ipynb"
    monkeypatch.setattr(pipeline, "_alive", lambda owner: True)
    assert locks._alive is pipeline._alive
    monkeypatch.undo()
    assert paths.ROOT == pipeline.ROOT == root and locks._alive is pipeline._alive is alive


def test_failed_run_leaves_finished_work_in_place(mini):
    run = pipeline.find(models.TINY, "broken")
    run.notebook.parent.mkdir(parents=True)
    run.notebook.write_text("previous result")
    with pytest.raises(Exception, match="boom"):
        pipeline.execute(run, progress=False)
    assert run.notebook.read_text() == "previous result"
    assert list(run.notebook.parent.iterdir()) == [run.notebook]  # no half-written leftovers
    assert not list((mini / "runs-tmp").iterdir())


def test_a_models_pages_share_a_kernel_and_nothing_else(mini, tmp_path):
    """`execute_in_turn` runs pages one after the other in one kernel (its imports paid once), each
    page starting as in a kernel of its own: none of the names, figures or folder of the page before,
    a library's warning shown again, execution counts from 1. A page that fails stops the run, the pages
    before it written."""
    for name in ("one", "two"):
        (mini / "notebooks" / f"{name}.py").write_text(
            '# %% tags=["parameters"]\nmodel = "x"\n\n'
            "# %%\nimport json, os, warnings\nimport matplotlib.pyplot as plt\n"
            'state = {"pid": os.getpid(), "cwd": os.getcwd(), "leftover": "leftover" in globals()}\n'
            'state["figures"] = plt.get_fignums()\n'
            "print(json.dumps(state))\nleftover = plt.figure()\n"
            "# a warning whose record of having been shown lives in a module, as a library's does\n"
            'registry = json.__dict__.setdefault("__warningregistry__", {})\n'
            'warnings.warn_explicit("careful", UserWarning, "lib.py", 1, registry=registry)\n'
        )
    one, two, broken = (pipeline.Run(models.TINY, e) for e in ("one", "two", "broken"))
    pages = pipeline.execute_in_turn([one, two], progress=False, out_dir=tmp_path / "out")
    assert pages == [tmp_path / "out" / "one.ipynb", tmp_path / "out" / "two.ipynb"]
    states = []
    for page in pages:
        cells = nbformat.read(page, as_version=4).cells  # parameters, injected parameters, the page's cell
        assert [c.execution_count for c in cells] == [1, 2, 3]
        cell = cells[2]
        streams = {o.name: o.text for o in cell.outputs if o.output_type == "stream"}
        assert "careful" in streams["stderr"]
        states.append(json.loads(streams["stdout"]))
    assert states[0]["pid"] == states[1]["pid"]  # one kernel
    assert not states[1]["leftover"] and states[1]["figures"] == []
    assert states[0]["cwd"] != states[1]["cwd"] and Path(states[1]["cwd"]).name == "work"
    with pytest.raises(Exception, match="boom"):
        pipeline.execute_in_turn([one, broken, two], progress=False, out_dir=tmp_path / "again")
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["one.ipynb"]  # written before the failure
    assert not list((mini / "runs-tmp").iterdir())


def test_a_pages_printed_text_is_one_output_per_run_of_one_stream():
    """The kernel sends printed text in chunks that depend on timing (the same page ran twice split one
    print differently): `tidy` joins each run of one stream, so a page's bytes depend on its content."""
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    def out(name, text):
        return new_output("stream", name=name, text=text)

    figure = new_output("display_data", data={"text/plain": "<Figure>"})
    outputs = [
        out("stdout", "a\n"),
        out("stdout", "b\n"),
        out("stderr", "w\n"),
        out("stdout", "c\n"),
        figure,
        out("stdout", "d\n"),
    ]
    nb = new_notebook(cells=[new_code_cell("", outputs=outputs)])
    pipeline.tidy(nb)
    assert [(o.output_type, o.get("name"), o.get("text")) for o in nb.cells[0].outputs] == [
        ("stream", "stdout", "a\nb\n"),
        ("stream", "stderr", "w\n"),
        ("stream", "stdout", "c\n"),
        ("display_data", None, None),
        ("stream", "stdout", "d\n"),
    ]


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
    (mini / "pipeline.yaml").write_text("models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 4}\n  broken:\n")
    assert [r.experiment for r in pipeline.stale()] == ["small", "broken"]
    done = pipeline.done_file(models.TINY)
    stamp, stale = pipeline.stamps(pipeline.runs())[models.TINY, "small"]
    assert stale and not done.exists()  # Snakemake runs the model's pages
    (mini / "pipeline.yaml").write_text("models: [ccs-tiny]\nexperiments:\n  small:\n    parameters: {images: 3}\n  broken:\n")
    stamp, stale = pipeline.stamps(pipeline.runs())[models.TINY, "small"]
    assert not stale and stamp.stat().st_mtime == 0  # current again: never newer than anything
    assert not done.exists()  # but the model's broken page is stale: its job still runs
    done.touch()  # as the job's last run left it
    broken, stale = pipeline.stamps(pipeline.runs())[models.TINY, "broken"]
    assert stale and broken.stat().st_mtime >= done.stat().st_mtime  # newer than the done file: it runs
    assert pipeline.stamps([run])[models.TINY, "small"] == (stamp, False) and done.is_file()  # all current: done


def test_other_parameters_never_overwrite_a_page(mini):
    run = pipeline.find(models.TINY, "small")
    page = pipeline.execute(run, progress=False)
    before = page.read_bytes()
    out = pipeline.execute(run, progress=False, extra={"images": 7})
    assert page.read_bytes() == before
    assert out.is_relative_to(mini / "outputs") and json.loads((out.parent / "small.json").read_text()) == {"images": 7}
    assert pipeline.execute(run, progress=False, extra={"images": 3}) == page  # the grid's own value


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"imagez": 64}, "has no parameter 'imagez'; its parameters: model, images, backend"),
        ({"images": "abc"}, "images must be an int"),
        ({"images": -5}, "images must be at least 1"),
        ({"images": True}, "images must be an int"),
        ({"backend": "gpt"}, "backend must be 'embedding' or 'openai'"),
    ],
)
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


def test_every_notebook_parameter_declares_its_range():
    """One declaration per parameter: its line in the parameters cell gives the name, the default (the
    type) and the range, and every range can be read."""
    for source in sorted({r.source for r in RUNS}):
        for d in pipeline.declarations(source).values():
            assert d.range, f"{source.name}: {d.name} has no [range] opening its comment"
            for clause in d.range.split(","):
                pipeline._clause(clause, {"model": models.TINY})


@pytest.mark.parametrize("source", sorted({r.source for r in RUNS}), ids=lambda p: p.stem)
def test_papermill_reads_every_declared_parameter(source, caplog):
    """papermill skips (with a warning) a parameter line holding a second '=', and then warns
    'Passed unknown parameter' on every run that sets it: ranges are written in words."""
    from papermill.translators import PythonTranslator

    nb = jupytext.read(source)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert [p.name for p in PythonTranslator.inspect(cell)] == list(pipeline.declarations(source))
    assert "Unable to parse" not in caplog.text


BAD_P = [  # (the page, -p values, what the one-line usage error must name)
    ("video", ["clips=2"], ["clips must be at least 3, not 2"]),  # was an IndexError in a figure cell
    ("ccs", ["llm_retries=-1", "backend=openai"], ["llm_retries must be at least 0"]),  # the kernel started first
    ("ccs", ["llm_timeout=0"], ["llm_timeout must be more than 0"]),  # was accepted silently
    ("ccs", ["backend=openai", "llm_timeout=.inf"], ["llm_timeout must be a finite number"]),  # failed 30 s later
    (
        "model_card",
        ["model=ViT-B-16-OpenAI"],
        ["model: the model is the first argument", "ccs run ViT-B-16-OpenAI model_card"],
    ),  # failed after 7 cells
    ("textspan", ["last_layers=99"], [f"last_layers must be in 1..layers (= {models.spec(models.TINY).layers})"]),
    ("pruning", ["splits=[test, nope]"], ["splits must be a non-empty list", "novel-shades"]),
    ("ood", ["detect_task=motion"], ["detect_task must be a concept of the world"]),
    ("ccs", ["pool=textspan"], ["ccs pool fetch textspan"]),
    ("pruning", ["seeds=[1,2"], ["seeds: '[1,2' is not a YAML value"]),  # was "ParserError ..."
    ("pruning", ["seeds"], ["expected KEY=VALUE, got 'seeds'"]),
    ("pruning", ["imagez=5"], ["has no parameter 'imagez'"]),
]


@pytest.mark.parametrize("experiment, params, words", BAD_P, ids=[" ".join(p) for _, p, _ in BAD_P])
def test_run_refuses_a_bad_parameter_before_a_kernel_starts(experiment, params, words, monkeypatch, tmp_path):
    """`ccs run` holds every -p value to the notebook's declaration of it: a usage error naming -p and
    the key, before a kernel starts and before anything is written."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "cache"))  # an empty one: textspan is not fetched there
    args = ["run", models.TINY, experiment] + [a for p in params for a in ("-p", p)]
    result = CliRunner().invoke(app, args, terminal_width=60)
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and error[0].startswith("Error: Invalid value for '-p': "), result.output
    for word in words:
        assert word in error[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture
def failing(mini):
    """Pages that fail in a cell: with the library's own error, and with an unexpected one."""
    (mini / "notebooks" / "mine.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"  # [model]\n\n# %%\nfrom ccs import datasets\n'
        'raise datasets.DatasetError("CIFAR-10: data_batch_1 is damaged; delete it and run `ccs data fetch CIFAR-10`")\n'
    )
    (mini / "notebooks" / "oops.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"  # [model]\n\n# %%\nx = [1, 2]\n\n# %%\nx[5]\n'
    )
    return mini


def test_an_error_in_a_cell_is_the_library_message_alone(failing, capfd):
    """Was the whole papermill traceback as one `error:` line of 2-16 KB, the message at its end."""
    result = CliRunner().invoke(app, ["run", models.TINY, "mine"])
    assert result.exit_code == 1
    assert result.output == ("error: CIFAR-10: data_batch_1 is damaged; delete it and run `ccs data fetch CIFAR-10`\n"), (
        result.output
    )
    result = CliRunner().invoke(app, ["run", models.TINY, "oops"])
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(
        "error: oops page (ccs-tiny), notebooks/oops.py line 8: IndexError: list index out of range "
        "(unexpected; rerun with `ccs --debug run ...`"
    ), result.output
    debug = CliRunner().invoke(app, ["--debug", "run", models.TINY, "oops"])
    assert debug.exit_code == 1 and "x[5]" in debug.output and "IndexError" in debug.output
    assert debug.output.splitlines()[-1] == result.output.strip()
    assert not (failing / "book").exists() and not list((failing / "runs-tmp").iterdir())
    # the kernels talk over Unix sockets: ipykernel has no unencrypted-TCP warning to print
    assert "without encryption" not in capfd.readouterr().err


def test_the_model_with_the_most_stale_work_left_goes_first():
    """A ready job's priority is the stale work of its model's pages, by the heads it analyses: a model
    with four stale pages outranks one with two, a current page adds nothing, an experiment without a
    measured time counts as OTHER, and of two models with the same stale pages the one with more heads
    goes first."""
    from ccs.pipeline import schedule

    s = schedule.SECONDS
    stale = {
        ("a", "textspan"): True,
        ("a", "pruning"): True,
        ("a", "seeds"): True,
        ("a", "new"): True,
        ("b", "textspan"): False,
        ("b", "pruning"): True,
        ("b", "seeds"): True,
        ("b", "new"): False,
        ("c", "new"): False,
    }
    work = pipeline.work_left(stale)
    assert work == {
        "a": s["textspan"] + s["pruning"] + s["seeds"] + schedule.OTHER,
        "b": s["pruning"] + s["seeds"],
        "c": 0,
    }
    # as much stale work: the model that analyses more heads first (ccs-tiny before ccs-tiny-h4)
    stale = {(m, e): True for m in (models.TINY, "ccs-tiny-h4") for e in ("textspan", "pruning")}
    heads = schedule.analysed_heads([models.TINY, "ccs-tiny-h4"])
    work = pipeline.work_left(stale, heads)
    assert work[models.TINY] == 2 * work["ccs-tiny-h4"] == 32 * (s["textspan"] + s["pruning"])


def test_a_stale_snakemake_lock_is_cleared_and_a_live_one_kept(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("a\n")
    (locks / "0.output.lock").write_text("b\n")
    # no record of who holds it (a run killed between its lock and its record, or one about to record):
    # kept while a Snakemake runs in the repository, cleared when none does
    running = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(60)", "snakemake"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
    )
    try:
        running.stdout.readline()  # started
        assert pipeline._snakemakes(tmp_path) == [running.pid]
        assert pipeline.clear_stale_lock(tmp_path) is None and len(list(locks.iterdir())) == 2
    finally:
        running.kill()
        running.wait()
    assert "no longer running" in pipeline.clear_stale_lock(tmp_path) and not list(locks.iterdir())
    # the run's own launcher names snakemake too (`time snakemake ...`, `bash -c "snakemake ..."`): not another run
    check = f"from ccs.pipeline import locks; print(locks._snakemakes(__import__('pathlib').Path('{tmp_path}')))"
    launched = subprocess.run(
        ["bash", "-c", f'{sys.executable} -c "{check}"; : snakemake'],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(pipeline.__file__).parents[2])},
        capture_output=True,
        text=True,
    )
    assert launched.stdout.strip() == "[]", launched.stderr[-2000:]
    (locks / "0.input.lock").write_text("a\n")
    (locks / "0.output.lock").write_text("b\n")
    pipeline.record_lock_owner(tmp_path)  # this process: alive
    assert pipeline.clear_stale_lock(tmp_path) is None and len(list(locks.iterdir())) == 2
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = pipeline._owner_file(tmp_path)
    record = {**json.loads(owner.read_text()), "pid": dead.pid}
    owner.write_text(json.dumps({**record, "host": "another-machine"}))
    assert pipeline.clear_stale_lock(tmp_path) is None  # cannot tell from here
    owner.write_text(json.dumps(record))
    assert "no longer running" in pipeline.clear_stale_lock(tmp_path)
    assert not list(locks.iterdir()) and not owner.exists()
    pipeline.record_lock_owner(tmp_path)
    pipeline.forget_lock_owner(tmp_path)
    assert not owner.exists()


def test_a_killed_owner_that_nobody_has_reaped_yet_is_not_alive():
    """A Snakemake killed with its make is a zombie until init reaps it: its pid still answers
    kill(pid, 0) and keeps its start time, but it holds nothing and its lock is stale."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        record = pipeline._process(child.pid)
        assert pipeline._alive(record)
        child.stdin.close()  # it exits; nobody waits for it yet
        zombie_by = time.time() + 30
        while pipeline._process(child.pid)["state"] != "Z" and time.time() < zombie_by:
            time.sleep(0.05)
        os.kill(child.pid, 0)  # the pid still answers, as a live process's would
        assert pipeline._process(child.pid)["start"] == record["start"]
        assert not pipeline._alive(record)
    finally:
        child.kill()
        child.wait()


def test_missing_weights_fail_before_a_kernel_starts(mini, monkeypatch):
    monkeypatch.setenv("CCS_WEIGHTS", str(mini))
    result = CliRunner().invoke(app, ["run", "ViT-B-32-OpenAI", "small"])
    assert result.exit_code == 1 and result.output.startswith("error: No weights for ViT-B-32-OpenAI")
    assert not (mini / "book").exists() and not (mini / "outputs").exists()


def test_damaged_weights_fail_before_a_kernel_starts_and_are_listed_as_such(mini, monkeypatch):
    """A truncated weights file failed inside the kernel with a bare SafetensorError (no path, no
    advice) while `ccs models` said the weights were on disk."""
    import papermill
    from safetensors.torch import save_file

    import torch

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    monkeypatch.setenv("CCS_WEIGHTS", str(mini))
    weights = mini / "ViT-B-32-OpenAI.safetensors"
    save_file({"w": torch.zeros(64, 64)}, weights)
    assert models.weights_problem(weights) is None
    weights.write_bytes(weights.read_bytes()[:-100])  # a download or copy cut short
    result = CliRunner().invoke(app, ["run", "ViT-B-32-OpenAI", "small"])
    assert result.exit_code == 1 and result.output.startswith("error: The weights of ViT-B-32-OpenAI at "), result.output
    assert str(weights) in result.output and "truncated" in result.output and "ccs fetch ViT-B-32-OpenAI" in result.output
    listed = {r["name"]: r for r in json.loads(CliRunner().invoke(app, ["models", "--json"]).output)}
    assert listed["ViT-B-32-OpenAI"]["weights"] == "damaged" and listed[models.TINY]["weights"] == "on disk"
    with pytest.raises(models.WeightsDamagedError, match="truncated"):
        models.load("ViT-B-32-OpenAI")  # inside a kernel too: the same message, not open_clip's
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    assert "not the JSON" in models.weights_problem(weights)
    assert not (mini / "book").exists() and not (mini / "outputs").exists()


def test_a_relative_cache_folder_is_kept_across_runs(mini, monkeypatch):
    """A relative CCS_CACHE was resolved by the kernel inside its scratch folder, deleted after the run:
    every run recomputed everything."""
    (mini / "notebooks" / "cachey.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"  # [model]\n\n'
        '# %%\nfrom ccs.cache import cache_dir\n(cache_dir("probe") / "mark").write_text("kept")\n'
    )
    (mini / "here").mkdir()
    monkeypatch.chdir(mini / "here")
    monkeypatch.setenv("CCS_CACHE", "relative-cache")
    pipeline.execute(pipeline.Run(models.TINY, "cachey"), progress=False)
    assert (mini / "here" / "relative-cache" / "probe" / "mark").read_text() == "kept"


def _other_file_system(tmp_path) -> Path:
    """A folder on another file system than tmp_path (/dev/shm, a tmpfs), or skip."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no other file system to write to")
    import tempfile

    return Path(tempfile.mkdtemp(dir=shm, prefix="ccs-test-"))


def test_outputs_and_book_on_another_file_system(mini):
    """outputs/ or book/ on another file system: the page ran to its end, then failed with
    "[Errno 18] Invalid cross-device link", leaving an empty output folder."""
    elsewhere = _other_file_system(mini)
    try:
        (elsewhere / "outputs").mkdir()
        (elsewhere / "book").mkdir()
        (mini / "outputs").symlink_to(elsewhere / "outputs")
        (mini / "book").symlink_to(elsewhere / "book")
        run = pipeline.find(models.TINY, "small")
        out = pipeline.execute(run, progress=False, extra={"images": 7})
        assert out.is_relative_to(mini / "outputs") and json.loads((out.parent / "small.json").read_text()) == {"images": 7}
        assert sorted(p.name for p in out.parent.iterdir()) == ["small.ipynb", "small.json"]  # no copies left
        page = pipeline.execute(run, progress=False)
        assert page == run.notebook and pipeline.is_current(run) and page.stat().st_mode & 0o777 != 0o600
        assert not list((mini / "runs-tmp").iterdir())
    finally:
        shutil.rmtree(elsewhere)


def test_a_destination_that_cannot_be_written_fails_before_a_kernel_starts(mini, monkeypatch):
    """A read-only book/ failed after the whole run."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    run = pipeline.find(models.TINY, "small")
    (mini / "book" / "runs").mkdir(parents=True)
    (mini / "book" / "runs" / "ccs-tiny").write_text("a file where the folder of the pages goes")
    result = CliRunner().invoke(app, ["run", models.TINY, "small"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: cannot write the run's results into ") and "is not a folder" in result.output
    (mini / "book" / "runs" / "ccs-tiny").unlink()
    if os.geteuid() != 0:  # root writes into a read-only folder anyway
        (mini / "book" / "runs").chmod(0o555)
        try:
            with pytest.raises(PermissionError, match="is not writable"):
                pipeline.execute(run, progress=False)
        finally:
            (mini / "book" / "runs").chmod(0o755)


def test_run_command_rejects_unknown_model_before_starting_a_kernel():
    result = CliRunner().invoke(app, ["run", "ViT-Z-99", "model_card"])
    assert result.exit_code == 1 and result.output.startswith("error: Unknown model 'ViT-Z-99'")


def _copy_of_this_tree(dest: Path) -> Path:
    """The tracked files of this repository as they are now, copied the way a clone writes them
    (fresh file times, in git's order): what a fresh clone of this commit holds."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=pipeline.ROOT, capture_output=True, check=True, text=True).stdout.split(
        "\0"
    )
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
    out = _in(repo, str(Path(sys.executable).with_name("snakemake")), "-n", "--quiet", "rules", "--rerun-triggers", "mtime")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr, out.stdout[-2000:] + out.stderr[-2000:]
    # a comment in the library changes no result: nothing re-runs (ccs.cache.code)
    init = repo / "lib" / "ccs" / "__init__.py"
    original = init.read_text()
    init.write_text(original + "\n# a reworded comment\n")
    assert _in(repo, ccs, "stale").stdout == ""
    # a change of the library's code re-runs every page, in one `make book`: one job a model, all its pages in book order
    init.write_text(original + "\nCHANGED = 1\n")
    out = _in(repo, str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--cores", "1", "--rerun-triggers", "mtime")
    log = out.stdout + out.stderr
    models_ = list(pipeline.grid()["models"])
    assert re.search(r"^pages\s+(\d+)$", log, re.M)[1] == str(len(models_)), log[-3000:]
    experiments = " ".join(r.experiment for r in pipeline.runs() if r.model == models_[0])
    assert all(f"exec ccs run --exit-with-parent {m} {experiments}\n" in log for m in models_), log[-3000:]
    init.write_text(original)
    # a changed parameter re-runs exactly the page it feeds
    grid = (repo / "pipeline.yaml").read_text()
    assert "clips: 500}" in grid
    (repo / "pipeline.yaml").write_text(grid.replace("clips: 500}", "clips: 400}"))
    assert _in(repo, ccs, "stale").stdout.split() == [f"book/runs/{m}/video.ipynb" for m in models_]
    # a model's job runs exactly its stale pages, in book order; a current page between them stays
    for experiment in ("textspan", "concepts"):
        source = repo / "notebooks" / f"{experiment}.py"
        source.write_text(source.read_text() + "\n# changed\n")
    out = _in(repo, str(Path(sys.executable).with_name("snakemake")), "-n", "-p", "--cores", "2", "--rerun-triggers", "mtime")
    log = out.stdout + out.stderr
    assert re.search(r"^pages\s+(\d+)$", log, re.M)[1] == str(len(models_)), log[-3000:]
    assert all(f"exec ccs run --exit-with-parent {m} textspan concepts video\n" in log for m in models_), log[-3000:]
    assert "OMP_NUM_THREADS=1 exec ccs run" in log  # 2 cores shared among the models' pages


BIN = Path(sys.executable).parent
# the pipeline as `make book` runs it (Makefile), on one core
SNAKEMAKE = [
    str(BIN / "snakemake"),
    "--cores",
    "1",
    "--quiet",
    "rules",
    "--keep-incomplete",
    "--rerun-incomplete",
    "--rerun-triggers",
    "mtime",
]


def _sleepy_book(repo: Path, executed: bool = True) -> dict:
    """A repository whose grid is one page that, when CCS_TEST_SLEEP is set, signals that its kernel
    is inside the cell (CCS_TEST_MARK) and sleeps there; its page is executed once when `executed`.
    Returns the environment to run it in."""
    shutil.copytree(pipeline.ROOT / "lib", repo / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("Snakefile", "Makefile"):
        shutil.copy(pipeline.ROOT / f, repo / f)
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "sleepy.py").write_text(
        '# %% tags=["parameters"]\nmodel = "x"  # [model]\n\n'
        '# %%\nimport os, time\nif os.environ.get("CCS_TEST_SLEEP"):\n'
        '    open(os.environ["CCS_TEST_MARK"], "w").close()\n'
        '    time.sleep(float(os.environ["CCS_TEST_SLEEP"]))\nprint("done")\n'
    )
    (repo / "pipeline.yaml").write_text("models: [ccs-tiny]\nexperiments:\n  sleepy:\n")
    (repo / "_toc.yml").write_text("")
    env = {**os.environ, "PYTHONPATH": str(repo / "lib"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("CCS_TEST_SLEEP", None)
    if executed:
        first = subprocess.run(SNAKEMAKE, cwd=repo, env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr[-3000:]
    return env


@pytest.mark.slow
def test_a_page_put_back_stale_runs_again(tmp_path):
    """Snakemake re-runs a job whose input (the stamp) is newer than its output only if the input's
    content differs from what the job's last run recorded. A page can be stale again for the digest
    it last ran with: here an older copy put back, as `git checkout book/runs` does after a run."""
    repo = tmp_path / "repo"
    env = _sleepy_book(repo)
    page, source = repo / "book" / "runs" / "ccs-tiny" / "sleepy.ipynb", repo / "notebooks" / "sleepy.py"
    before = page.read_bytes()
    source.write_text(source.read_text() + "\n# changed\n")
    assert subprocess.run(SNAKEMAKE, cwd=repo, env=env, capture_output=True).returncode == 0
    assert page.read_bytes() != before
    page.write_bytes(before)
    stale = [str(BIN / "ccs"), "stale"]
    assert subprocess.run(stale, cwd=repo, env=env, capture_output=True, text=True).stdout.split() == [
        "book/runs/ccs-tiny/sleepy.ipynb"
    ]
    again = subprocess.run(SNAKEMAKE, cwd=repo, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert subprocess.run(stale, cwd=repo, env=env, capture_output=True, text=True).stdout == ""


def _start_in_the_cell(repo: Path, env: dict, cmd: list[str], log: Path) -> subprocess.Popen:
    """Make the page stale and start `cmd` (in a session of its own); return once the page's kernel
    is inside its sleeping cell: a state that does not depend on how busy the machine is."""
    source = repo / "notebooks" / "sleepy.py"
    source.write_text(source.read_text() + "# changed\n")  # stale now: the next run executes it
    mark = repo / "in-the-cell"
    mark.unlink(missing_ok=True)
    # stdout to a file, not a pipe nobody reads (which could fill and block)
    proc = subprocess.Popen(
        cmd,
        cwd=repo,
        env={**env, "CCS_TEST_SLEEP": "600", "CCS_TEST_MARK": str(mark)},
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 300  # a start-up under heavy load
    while time.time() < deadline and not mark.exists() and proc.poll() is None:
        time.sleep(0.2)
    if not mark.exists():
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the page's kernel never reached its cell:\n" + log.read_text()[-3000:])
    return proc


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, start time, state) of every process (Linux /proc)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(stat.parent.name)] = (int(fields[1]), fields[19], fields[0])
    return out


def _descendants(pid: int) -> dict[int, str]:
    """pid -> start time of every process below `pid`."""
    procs, out, todo = _processes(), {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, start, _) in procs.items():
            if ppid == parent and child not in out:
                out[child] = start
                todo.append(child)
    return out


def _still_running(tree: dict[int, str]) -> dict[int, str]:
    procs = _processes()
    return {pid: start for pid, start in tree.items() if pid in procs and procs[pid][1] == start and procs[pid][2] != "Z"}


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_ctrl_c_during_the_book_run_keeps_the_page(tmp_path):
    repo = tmp_path / "repo"
    env = _sleepy_book(repo)
    page = repo / "book" / "runs" / "ccs-tiny" / "sleepy.ipynb"
    first = page.read_bytes()
    proc = _start_in_the_cell(repo, env, SNAKEMAKE, tmp_path / "snakemake.log")
    tree = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    try:
        proc.wait(120)  # about 10 s on an idle machine; the kernel sleeps 600 s
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the pipeline did not stop on Ctrl-C:\n" + (tmp_path / "snakemake.log").read_text()[-3000:])
    assert proc.returncode != 0 and page.read_bytes() == first
    deadline = time.time() + 30
    while _still_running(tree) and time.time() < deadline:
        time.sleep(0.5)
    assert not _still_running(tree), [_command(p) for p in _still_running(tree)]
    said = (tmp_path / "snakemake.log").read_text()  # a stop the user asked for: no kernel noise about it
    for noise in ("KeyboardInterrupt caught in kernel", "Current working directory doesn't exist"):
        assert noise not in said, said[-3000:]
    rerun = subprocess.run(SNAKEMAKE, cwd=repo, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert page.read_bytes() != first and "done" in page.read_text()
    assert not list((repo / "runs-tmp").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["snakemake"])  # make: test_sigkill_of_make_at_any_point_of_its_start_up...
def test_sigkill_of_the_book_run_leaves_nothing_running_and_no_lock(killed, tmp_path):
    """SIGKILL of Snakemake (or of `make book`) used to leave `ccs run` and its kernel running: they
    rewrote the page after make had exited, and the next run stopped on Snakemake's stale lock."""
    repo = tmp_path / "repo"
    env = _sleepy_book(repo, executed=False)  # the page does not exist yet: nothing may write it
    page = repo / "book" / "runs" / "ccs-tiny" / "sleepy.ipynb"
    # make: the Makefile's pipeline target, with this .venv (-o: never reinstall it)
    stamp = BIN.parent / ".installed-stamp"
    cmd = SNAKEMAKE if killed == "snakemake" else ["make", "-s", "pipeline", f"VENV={BIN.parent}", "-o", str(stamp)]
    proc = _start_in_the_cell(repo, env, cmd, tmp_path / "run.log")
    tree = _descendants(proc.pid)
    commands = [_command(p) for p in tree]
    assert any("ccs run" in c for c in commands) and any("ipykernel" in c for c in commands), commands
    os.kill(proc.pid, signal.SIGKILL)  # that process only: its children are on their own now
    proc.wait()
    deadline = time.time() + 60  # about 5 s on an idle machine
    while _still_running(tree) and time.time() < deadline:
        time.sleep(0.5)
    left = _still_running(tree)
    for pid in left:  # clean up after a failure: these are this test's own processes
        os.kill(pid, signal.SIGKILL)
    assert not left, [_command(p) for p in left]
    assert not page.exists() and not list((repo / "runs-tmp").iterdir())
    # the lock of the dead run is cleared by the next one, which runs the page
    assert list((repo / ".snakemake" / "locks").iterdir())
    rerun = subprocess.run(SNAKEMAKE, cwd=repo, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "cleared the lock of a Snakemake run that is no longer running" in rerun.stderr
    assert "done" in page.read_text()


def _of_the_run(token: str) -> list[int]:
    """The live processes whose environment holds CCS_TEST_RUN=token: every process a run started
    (the kernel too: it inherits the environment), whoever its parent is now."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if f"CCS_TEST_RUN={token}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.append(int(proc.name))
        except OSError:
            continue
    return out


@pytest.mark.slow
def test_sigkill_of_make_at_any_point_of_its_start_up_leaves_nothing(tmp_path):
    """SIGKILL of `make book` at many points of its start-up: before Snakemake's imports finish (its
    request to die with make came after them, when make was already gone: the orphan ran every page),
    between Snakemake's lock and the record of its owner (the lock never cleared), as `ccs run` starts
    (it rewrote the page after make had exited), and with the kernel in its cell. After each kill no
    process of the run survives, the page is never written, and the next `make` proceeds."""
    repo = tmp_path / "repo"
    env = _sleepy_book(repo, executed=False)  # the page does not exist yet: nothing may write it
    page = repo / "book" / "runs" / "ccs-tiny" / "sleepy.ipynb"
    snakefile = repo / "Snakefile"  # a hook that holds the run between its lock and its owner record
    text = snakefile.read_text()
    assert "    pipeline.record_lock_owner()" in text
    snakefile.write_text(
        text.replace(
            "    pipeline.record_lock_owner()",
            (
                "    import os, time\n"
                "    if os.environ.get('CCS_TEST_LOCKED'):\n"
                "        open(os.environ['CCS_TEST_LOCKED'], 'w').close()\n"
                "        time.sleep(600)\n"
                "    pipeline.record_lock_owner()"
            ),
            1,
        )
    )
    make = ["make", "-s", "pipeline", f"VENV={BIN.parent}", "-o", str(BIN.parent / ".installed-stamp")]
    locked, in_cell = tmp_path / "locked", tmp_path / "in-cell"
    log = tmp_path / "make.log"

    def start(i: int, **extra) -> tuple[subprocess.Popen, str]:
        token = f"{os.getpid()}-{i}"
        run_env = {**env, "CCS_TEST_RUN": token, "CCS_TEST_SLEEP": "600", "CCS_TEST_MARK": str(in_cell), **extra}
        return subprocess.Popen(
            make, cwd=repo, env=run_env, start_new_session=True, stdout=log.open("a"), stderr=subprocess.STDOUT
        ), token

    def wait_for(proc, test, what):
        deadline = time.time() + 300  # a start-up under heavy load
        while not test() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        if not test():
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the run never reached {what}:\n" + log.read_text()[-3000:])

    def ccs_run_started(token):
        return lambda: any("ccs run" in _command(p) for p in _of_the_run(token))

    # (how long after make starts, or the point it waits for, then how long after it) of each kill
    points = [(d, None) for d in (0, 0.03, 0.25, 1.0)]
    points += [("lock", 0), ("ccs run", 0), ("ccs run", 1.0), ("cell", 0)]
    for i, (when, after) in enumerate(points):
        locked.unlink(missing_ok=True)
        in_cell.unlink(missing_ok=True)
        proc, token = start(i, **({"CCS_TEST_LOCKED": str(locked)} if when == "lock" else {}))
        if when == "lock":
            wait_for(proc, locked.exists, "its lock")
        elif when == "ccs run":
            wait_for(proc, ccs_run_started(token), "`ccs run`")
        elif when == "cell":
            wait_for(proc, in_cell.exists, "the page's cell")
        time.sleep(after if after is not None else when)
        os.kill(proc.pid, signal.SIGKILL)  # make only: what it started is on its own now
        proc.wait()
        gone_by = time.time() + 60  # seconds on an idle machine (a `ccs run` finishing its imports)
        while _of_the_run(token) and time.time() < gone_by:
            time.sleep(0.1)
        left = _of_the_run(token)
        for pid in left:  # clean up after a failure: these are this test's own processes
            os.kill(pid, signal.SIGKILL)
        assert not left, (when, after, [_command(p) for p in left])
        assert not page.exists(), (when, after)  # nothing wrote the page after make had gone
        if when == "lock":  # the run died holding Snakemake's lock without a record of its owner
            assert list((repo / ".snakemake" / "locks").iterdir()) and not pipeline._owner_file(repo).exists()
    # the next `make` clears the dead run's lock (its Snakemake may still be a zombie nobody reaped:
    # dead all the same) and runs the page to its end
    state = (
        f"locks: {sorted(p.name for p in (repo / '.snakemake').glob('locks/*'))}, owner: "
        f"{pipeline._owner_file(repo).read_text() if pipeline._owner_file(repo).exists() else None}, "
        f"running: {[_command(p) for p in pipeline._snakemakes(repo)]}\n"
    )
    rerun = subprocess.run(make, cwd=repo, env={**env, "CCS_TEST_RUN": "last"}, capture_output=True, text=True)
    assert rerun.returncode == 0, state + rerun.stdout[-2000:] + rerun.stderr[-2000:] + log.read_text()[-3000:]
    assert "cleared the lock of a Snakemake run that is no longer running" in rerun.stdout + rerun.stderr
    assert "done" in page.read_text() and not list((repo / "runs-tmp").iterdir())
    assert not list((repo / ".snakemake" / "locks").glob("*"))


@pytest.mark.slow
def test_the_snakefile_runs_through_a_cluster_executor(tmp_path):
    """Scale-out as the README promises it, through a non-local executor: cluster-generic submits each
    model's job script through a shell script (here it starts the job in the background, as a batch
    system would on a node) that records the threads and resources it was asked for; each job is a
    Snakemake of its own, whose pages and done file the main Snakemake picks up."""
    repo = tmp_path / "repo"
    shutil.copytree(pipeline.ROOT / "lib", repo / "lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(pipeline.ROOT / "Snakefile", repo / "Snakefile")
    (repo / "notebooks").mkdir()
    for name in ("first", "second"):
        (repo / "notebooks" / f"{name}.py").write_text(
            '# %% tags=["parameters"]\nmodel = "x"  # [model]\nimages = 1  # [at least 1]\n\n'
            f'# %%\nimport json, os\njson.dump({{"page": "{name}", "images": images, '
            '"threads": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}, open("' + name + '.json", "w"))\n'
        )
    (repo / "pipeline.yaml").write_text("models: [ccs-tiny]\nexperiments:\n  first:\n    parameters: {images: 3}\n  second:\n")
    (repo / "_toc.yml").write_text("")
    (repo / "submit.sh").write_text(
        "#!/bin/sh\n# submit.sh THREADS MEM_MB JOBSCRIPT: start the job script, print its job id\n"
        'echo "threads=$1 mem_mb=$2" >> submissions.log\n'
        'sh "$3" > "$3.log" 2>&1 &\necho "$!"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "lib"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [
        str(BIN / "snakemake"),
        "--executor",
        "cluster-generic",
        "--jobs",
        "2",
        "--quiet",
        "rules",
        "--cluster-generic-submit-cmd",
        "sh submit.sh {threads} {resources.mem_mb}",
        "--default-resources",
        "mem_mb=1234",
        "--latency-wait",
        "30",
        "--keep-incomplete",
        "--rerun-incomplete",
        "--rerun-triggers",
        "mtime",
    ]
    out = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    jobs = "".join(p.read_text() for p in repo.rglob("*.sh.log"))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:] + jobs[-3000:]
    assert (repo / "submissions.log").read_text() == "threads=2 mem_mb=1234\n"  # one job: the model's pages
    pages = {}
    for name in ("first", "second"):
        page = repo / "book" / "runs" / "ccs-tiny" / f"{name}.ipynb"
        assert pipeline.stored_digest(page)  # a finished page, moved into place by its job
        pages[name] = json.loads((page.parent / f"{name}.json").read_text())
    assert pages["first"]["images"] == 3 and pages["second"]["images"] == 1  # each page's own parameters
    assert pages["first"]["threads"] == pages["second"]["threads"] == "2"  # the rule's threads reach the kernel
    assert pages["first"]["pid"] == pages["second"]["pid"]  # one kernel ran the model's pages in turn
    assert (repo / ".snakemake" / "ccs-stamps" / "ccs-tiny.done").is_file()
    # and the next run finds every page current: nothing is submitted
    again = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stderr[-2000:]
    assert len((repo / "submissions.log").read_text().split()) == 2


def test_figure_labels_of_other_models_pages_are_suffixed_once():
    import nbformat

    from ccs import models

    def page():
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell("as {numref}`fig-pruning-answer` shows"),
            nbformat.v4.new_code_cell("1", metadata={"mystnb": {"figure": {"name": "fig-pruning-answer"}}}),
        ]
        return nb

    default, other = page(), page()
    pipeline.tidy(default, models.TINY)
    pipeline.tidy(other, "ccs-tiny-s1")
    pipeline.tidy(other, "ccs-tiny-s1")  # idempotent
    assert pipeline.TINY_MODEL == models.TINY
    assert default.cells[1].metadata["mystnb"]["figure"]["name"] == "fig-pruning-answer"
    assert other.cells[1].metadata["mystnb"]["figure"]["name"] == "fig-pruning-answer-ccs-tiny-s1"
    assert other.cells[0].source == "as {numref}`fig-pruning-answer-ccs-tiny-s1` shows"
