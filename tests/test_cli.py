"""The `ccs` command's boundary: every option is checked before any work, and every failure is one
line (`error: ...`, exit 1; usage errors keep click's format, exit 2) without a traceback, which
only `--debug` / CCS_DEBUG=1 shows; an offline `ccs fetch` fails within seconds."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccs import models
from ccs.cli import app, error_message
from ccs.cli.tiny import parse_sibling_weights

CCS = Path(sys.executable).parent / "ccs"  # the installed entry point (ccs = "ccs.cli:app")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty CCS_CACHE: a refused command must leave it empty."""
    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def _assert_clean_failure(result, code=None):
    """Non-zero exit, no traceback, and either one `error:` line (exit 1) or a usage error (exit 2)."""
    out = result.output
    assert result.exit_code != 0, out
    assert "Traceback" not in out, out
    if code is not None:
        assert result.exit_code == code, out
    if result.exit_code == 1:
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), out
    else:
        assert result.exit_code == 2 and "Usage: " in out and "Invalid value" in out, out


USAGE_ERRORS = [  # (arguments, a word the message must contain)
    (["textspan", "--images", "0"], "--images"),
    (["textspan", "--images", "1"], "--images"),
    (["textspan", "--rank", "-3"], "--rank"),
    (["textspan", "--texts", "0"], "--texts"),
    (["textspan", "--seed", "-1"], "--seed"),
    (["textspan", "--layers", "0"], "--layers"),
    (["textspan", "--layers", "99"], "6 layers"),
    (["textspan", "--convention", "nope"], "centred"),
    (["textspan", "--pool", "world+x"], "--pool"),
    (["textspan", "--pool", "world+99999999"], "1..5000"),
    (["eval-tiny", "--seed", "-1"], "--seed"),
    (["eval-tiny", "--n", "0"], "--n"),
    (["eval-tiny", "--splits", "test,nope"], "novel-shapes"),
    (["eval-tiny", "--splits", "test,test"], "distinct"),
    (["world", "preview", "--n", "0"], "--n"),
    (["world", "preview", "--seed", "-1"], "--seed"),
    (["world", "preview", "--scale", "0"], "--scale"),
    (["world", "preview", "--split", "nope"], "novel-shapes"),
    (["world", "preview", "--out", "{tmp}/missing/grid.png"], "does not exist"),
    (["world", "preview", "--out", "{tmp}/grid.nope"], "image file"),
    (["train-tiny", "--sibling-weights", "garbage"], "CONCEPT=WEIGHT"),
    (["train-tiny", "--sibling-weights", "shape=x"], "shape"),
    (["train-tiny", "--sibling-weights", "colr=1"], "colour"),
    (["train-tiny", "--sibling-weights", "shape=-1"], ">= 0"),
    (["train-tiny", "--sibling-weights", "shape=0,size=0"], "> 0"),
    (["train-tiny", "--sibling-weights", "shape=1,shape=2"], "twice"),
    (["train-tiny", "--lr", "0"], "learning rate"),
    (["train-tiny", "--lr", "nan"], "learning rate"),
    (["train-tiny", "--batch-size", "1"], "--batch-size"),
    (["train-tiny", "--sibling-frac", "1.5"], "--sibling-frac"),
    (["train-tiny", "--sibling-group", "1"], "--sibling-group"),
    (["train-tiny", "--threads", "0"], "--threads"),
    (["train-tiny", "--max-steps", "-1"], "--max-steps"),
    (["train-tiny", "--export"], "last.pt"),
    (["pool", "fetch", "nope"], "URL"),
    (["pool", "show", "--out", "{tmp}/pool.csv"], ".tsv"),
]


@pytest.mark.parametrize("args,word", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_bad_options_are_usage_errors_before_any_work(args, word, cache, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "train-tiny":  # were the checks missing, train nothing, into tmp_path
        args += ["--out", str(tmp_path / "run")] + ([] if "--max-steps" in args else ["--max-steps", "0"])
    result = CliRunner().invoke(app, args)
    _assert_clean_failure(result, code=2)
    assert word in " ".join(result.output.replace("│", " ").split()), result.output
    assert _files(cache) == []  # nothing decomposed, embedded or cached
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("args", [["textspan", "--model", "nope"], ["eval-tiny", "--model", "nope"], ["fetch", "nope"]])
def test_unknown_model_is_one_line_listing_the_known_ones(args, cache):
    result = CliRunner().invoke(app, args)
    _assert_clean_failure(result, code=1)
    assert "Unknown model 'nope'" in result.output
    assert all(name in result.output for name in models.names())
    assert _files(cache) == []


@pytest.mark.parametrize("args", [["textspan", "--pool", "nope"], ["textspan", "--pool", "textspan"], ["pool", "show", "nope"]])
def test_library_errors_are_one_line(args, cache, monkeypatch):
    result = CliRunner().invoke(app, args)
    _assert_clean_failure(result, code=1)
    assert _files(cache) == []


def _broken_world(monkeypatch, exc):
    from ccs import world

    def sample(*args, **kwargs):
        raise exc

    monkeypatch.setattr(world, "sample", sample)


def test_unexpected_error_is_one_line_pointing_to_debug(monkeypatch, tmp_path):
    _broken_world(monkeypatch, ZeroDivisionError("integer division or modulo by zero"))
    monkeypatch.delenv("CCS_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["world", "preview", "--out", str(tmp_path / "g.png")])
    _assert_clean_failure(result, code=1)
    assert "ZeroDivisionError" in result.output and "--debug" in result.output


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how, monkeypatch, tmp_path):
    _broken_world(monkeypatch, ValueError("boom"))
    args = ["world", "preview", "--out", str(tmp_path / "g.png")]
    result = CliRunner().invoke(
        app, ["--debug", *args] if how == "flag" else args, env={"CCS_DEBUG": "1"} if how == "env" else {"CCS_DEBUG": ""}
    )
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output and "ValueError" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: ")


def test_ctrl_c_is_interrupted_exit_130(monkeypatch, tmp_path):
    _broken_world(monkeypatch, KeyboardInterrupt())
    result = CliRunner().invoke(app, ["world", "preview", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 130 and result.output.strip() == "interrupted"


def test_error_messages():
    assert error_message(models.WeightsNotFoundError("no\nweights")) == "no weights"
    assert error_message(FileNotFoundError(2, "No such file", "x")).startswith("[Errno 2]")
    assert "KeyError" in error_message(KeyError("texts")) and "--debug" in error_message(KeyError("x"))
    try:
        models.spec("nope")
    except models.UnknownModelError as e:
        assert error_message(e).startswith("Unknown model 'nope'. Known models: ccs-tiny")


def test_sibling_weights_parse():
    assert parse_sibling_weights("") == {}
    assert parse_sibling_weights("shape=0.6, texture=0.3,position=0.1,") == {"shape": 0.6, "texture": 0.3, "position": 0.1}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: connections are refused


def _offline_env(tmp_path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "hf_hub_offline", "ccs_debug")
    }
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HUB_CACHE=str(tmp_path / "hub"), NO_PROXY="*")
    env.pop("CCS_WEIGHTS", None)
    return env


def test_fetch_unreachable_hub_fails_in_seconds_with_one_line(tmp_path):
    """The installed script, as a user runs it (the hub: a closed local port, not the real network)."""
    env = _offline_env(tmp_path)
    start = time.perf_counter()
    p = subprocess.run([str(CCS), "fetch", "ViT-B-32-OpenAI"], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start
    assert p.returncode == 1, p.stderr
    assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert p.stderr.startswith("error: cannot reach 127.0.0.1")
    assert "ccs fetch ViT-B-32-OpenAI" in p.stderr and "$CCS_WEIGHTS/ViT-B-32-OpenAI.safetensors" in p.stderr
    if elapsed >= 10:  # a busy machine: compare with the start-up alone (imports, registry)
        start = time.perf_counter()
        subprocess.run([str(CCS), "fetch", "ccs-tiny"], env=env, capture_output=True, timeout=120)
        assert elapsed - (time.perf_counter() - start) < 5, elapsed
    assert elapsed < 30, elapsed  # was 53 s of hub retries and a 93-line traceback


def test_entry_point_debug_shows_the_traceback_and_plain_does_not(tmp_path):
    env = _offline_env(tmp_path)
    plain = subprocess.run([str(CCS), "pool", "show", "nope"], env=env, capture_output=True, text=True, timeout=120)
    debug = subprocess.run([str(CCS), "--debug", "pool", "show", "nope"], env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == debug.returncode == 1
    assert plain.stderr.startswith("error: Unknown pool 'nope'") and len(plain.stderr.splitlines()) == 1
    assert "Traceback" in debug.stderr and debug.stderr.splitlines()[-1] == plain.stderr.strip()


def test_fetch_offline_env_and_cached_weights_need_no_network(tmp_path, monkeypatch):
    import huggingface_hub.constants  # a submodule: not loaded by the package itself

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        models.fetch("ViT-B-16-OpenAI")
    snapshot = tmp_path / "hub" / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    assert models.fetch("ViT-B-16-OpenAI") == snapshot / "open_clip_pytorch_model.bin"


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is not JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"layer": 11, "head": 5}]', "needs integer 'layer' and 'head' and a non-empty list of strings 'texts'"),
        ('[{"layer": 11, "head": 5, "texts": [1, 2]}]', "list of strings 'texts'"),
    ],
)
def test_heads_records_are_checked_before_any_work(tmp_path, content, message):
    from typer.testing import CliRunner

    from ccs.cli import app

    path = tmp_path / "records.json"
    path.write_text(content)
    out = CliRunner().invoke(app, ["heads", "--records", str(path)])
    assert out.exit_code == 2 and message in " ".join(out.output.split())


HEAVY = ("torch", "scipy", "sklearn", "pandas", "open_clip", "joblib", "papermill", "jupytext", "openai")


def _imported_by(code: str) -> list[str]:
    """Run `code` in a fresh interpreter: the words of its last printed line (what `code` printed
    there without a newline), then the top-level modules it imported."""
    code = f"import sys\n{code}\nprint(*sorted(m.split('.')[0] for m in sys.modules))\n"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()[-1].split()


def test_help_imports_no_heavy_module():
    """`ccs --help` and every command's --help stay fast (was 5-10 s): the command modules import the
    library inside their commands. Checked on the import graph, not on a clock."""
    helped, *loaded = _imported_by(
        "import typer.main\nfrom ccs.cli import app\n"
        "root = typer.main.get_command(app)\n"
        "def walk(cmd, path):\n"
        "    yield path\n"
        "    for name in getattr(cmd, 'commands', {}):\n"
        "        yield from walk(cmd.commands[name], [*path, name])\n"
        "helped = 0\n"
        "for args in walk(root, []):\n"
        "    root.main([*args, '--help'], prog_name='ccs', standalone_mode=False)\n"
        "    helped += 1\n"
        "print(helped, end=' ')"
    )
    assert int(helped) >= 20  # the root, every command and every sub-command
    assert "typer" in loaded and not set(HEAVY) & set(loaded), sorted(set(HEAVY) & set(loaded))
    # the installed script, as a user runs it
    p = subprocess.run([sys.executable, "-X", "importtime", str(CCS), "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Commands:" in p.stdout, p.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "ccs" in imported and not set(HEAVY) & imported, sorted(set(HEAVY) & imported)


def test_checking_a_run_before_its_kernel_imports_no_torch():
    """`ccs run` names the model and checks the page's parameters before a kernel starts: the kernel
    imports torch anyway, so the parent importing it too cost every page about 1.7 s (measured with
    py-spy on `ccs run ccs-tiny textspan`). Checked on the import graph, for a page without a world
    parameter (a [concept] parameter reads the world's vocabulary, which imports torch)."""
    loaded = set(
        _imported_by(
            "from ccs import models, pipeline\n"
            "models.spec('ccs-tiny')\nrun = pipeline.find('ccs-tiny', 'textspan')\n"
            "pipeline.check_parameters(run.source, {'model': 'ccs-tiny', **run.parameters, 'texts_per_head': 4})"
        )
    )
    assert "ccs" in loaded and not {"torch", "open_clip"} & loaded, sorted({"torch", "open_clip"} & loaded)


def test_train_tiny_trains_a_zoo_model_in_its_own_world(tmp_path, monkeypatch):
    """A zoo entry's `world` (the variant the registry analyses it in) reaches the training config."""
    from ccs import train

    zoo = {"rich-model": {"config": "ccs-tiny", "seed": 3, "world": "rich"}, "plain": {"config": "ccs-tiny", "seed": 0}}
    monkeypatch.setattr(models, "zoo", lambda: zoo)
    seen = {}

    def fake_train(out, cfg, max_steps=None):
        seen[out.name] = cfg
        return train.State()

    monkeypatch.setattr(train, "train", fake_train)
    for name in zoo:
        result = CliRunner().invoke(app, ["train-tiny", "--model", name, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    assert seen["rich-model"].world == "rich" and seen["rich-model"].seed == 3
    assert seen["plain"].world == "base"


def test_cli_defaults_are_the_library_defaults():
    """The defaults --help shows are read from the library's source without importing it: the same
    values the library holds."""
    import typer.main

    from ccs import llm, train

    cmds = typer.main.get_command(app).commands
    params = lambda name: {p.name: p.default for p in cmds[name].params if p.param_type_name == "option"}
    recipe, tiny = train.TrainConfig(), params("train-tiny")
    for name in (
        "pairs",
        "batch_size",
        "lr",
        "eval_every",
        "sibling_frac",
        "sibling_group",
        "precision",
        "loader_workers",
        "model",
    ):
        assert tiny[name] == getattr(recipe, name), name
    assert params("heads")["timeout"] == llm.TIMEOUT and params("heads")["retries"] == llm.RETRIES


@pytest.mark.parametrize("columns", ["40", "80", "200"])
def test_usage_errors_are_one_plain_line_at_any_terminal_width(tmp_path, columns):
    """A usage error is click's plain `Error: ...` line, not a Rich panel whose box characters and
    line breaks depend on the terminal's width."""
    path = tmp_path / "records.json"
    path.write_text("not json")
    out = CliRunner().invoke(app, ["heads", "--records", str(path)], env={"COLUMNS": columns}, terminal_width=int(columns))
    assert out.exit_code == 2
    errors = [line for line in out.output.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: Invalid value for '--records': {path} is not JSON (Expecting value: line 1 column 1 (char 0))"], (
        out.output
    )
    assert not set("│╭╰─") & set(out.output)


@pytest.mark.parametrize(
    "args, folder",
    [
        (["regime", "run", "base", "--pairs", "256"], Path("train-runs/regime/base")),
        (["regime", "run", "rich", "--full", "--seed", "3"], Path("train-runs/regime/rich-full-s3")),
        (["train-tiny", "--out", "mine", "--max-steps", "1"], Path("mine")),
    ],
)
def test_a_run_folder_that_another_process_trains_is_refused_in_one_line(args, folder, tmp_path, monkeypatch):
    from ccs.cli import run_lock

    monkeypatch.chdir(tmp_path)
    folder.mkdir(parents=True)
    hold = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); print(1, flush=True); time.sleep(99)"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "1"  # the other process holds the folder
        result = CliRunner().invoke(app, args)
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1, result.output
    assert f"error: {folder} is being trained by another process" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # nothing trained, nothing overwritten
    with run_lock(folder):  # the holder is gone: its lock went with it
        pass
