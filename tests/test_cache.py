"""The on-disk cache: keyed by the library's code, so a code change never serves a stale result."""

from ccs import cache


def test_memory_is_keyed_by_library_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    cache.memory.cache_clear()
    try:
        location = str(cache.memory().location)
        assert location.startswith(str(tmp_path))
        assert cache.library_digest() in location
    finally:
        cache.memory.cache_clear()


def test_library_digest_changes_with_any_module(tmp_path, monkeypatch):
    before = cache.library_digest()
    cache.library_digest.cache_clear()
    fake = tmp_path / "ccs"
    fake.mkdir()
    (fake / "cache.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "__file__", str(fake / "cache.py"))
    one = cache.library_digest()
    cache.library_digest.cache_clear()
    (fake / "other.py").write_text("y = 2\n")
    two = cache.library_digest()
    cache.library_digest.cache_clear()
    (fake / "other.py").write_text('"""Why y is 2."""\ny = 2  # a comment\n')
    assert cache.library_digest() == two  # a comment and a docstring change no result
    cache.library_digest.cache_clear()
    assert len({before, one, two}) == 3
    # the command line is not what a page computes with: changing it re-executes nothing
    (fake / "cli").mkdir()
    (fake / "cli" / "heads.py").write_text("z = 3\n")
    assert cache.library_digest() == two
    cache.library_digest.cache_clear()
    (fake / "regime").mkdir()
    (fake / "regime" / "rule.py").write_text("w = 4\n")  # nor is the regime study
    (fake / "data").mkdir()
    (fake / "data" / "regime.yaml").write_text("pairs: 1\n")
    assert cache.library_digest() == two
    cache.library_digest.cache_clear()
    (fake / "pipeline").mkdir()
    for supervision in (
        "pipeline/locks.py",
        "pipeline/freshness.py",
        "pipeline/schedule.py",
        "lifeline.py",
    ):  # nor is the run's supervision
        (fake / supervision).write_text("v = 5\n")
    assert cache.library_digest() == two
    cache.library_digest.cache_clear()
    (fake / "pipeline" / "execution.py").write_text("u = 6\n")  # how a page is executed is
    assert cache.library_digest() != two
    (fake / "pipeline" / "execution.py").unlink()
    cache.library_digest.cache_clear()
    (fake / "data" / "vocabulary.yaml").write_text("shape: [circle]\n")  # the package's other data are
    assert cache.library_digest() != two
    cache.library_digest.cache_clear()


def test_a_module_s_code_ignores_comments_docstrings_and_blank_lines_only(tmp_path):
    def code(source: str) -> bytes:
        path = tmp_path / "m.py"
        path.write_text(source)
        return cache.code(path)

    base = code('"""A module."""\n\nimport os  # the system\n\n\ndef f(x):\n    """Twice x."""\n    return 2 * x\n')
    same = [
        '"""A module, reworded\nover two lines."""\nimport os\ndef f(x):\n    return 2 * x   \n',
        "# a new comment\nimport os  # another\n\ndef f(x):\n    # why\n    return 2 * x\n",
        'import os\ndef f(x):\n    "Twice x, in one line."\n    return 2 * x\n',
    ]
    assert all(code(s) == base for s in same)
    changed = [
        "import os\ndef f(x):\n    return 3 * x\n",
        'import os\ndef f(x):\n    return "2" * x\n',
        'import os\ndef f(x):\n    "Twice x."\n    return 2 * x\nLABEL = "# not a comment"\n',
    ]
    assert len({base, *map(code, changed)}) == 4
    # ast counts columns in UTF-8 bytes: a non-ASCII docstring is cut where it ends, not further
    assert code('def f(x): "dé"; return x\n') == code('def f(x): "d"; return x\n') != code('def f(x): "d"; return 1\n')
    assert code("def f(:\n    # not Python\n") == b"def f(:\n    # not Python\n"  # taken whole


def test_the_library_digest_remembers_each_module_s_code_digest_and_survives_a_bad_memo(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    cache.library_digest.cache_clear()
    first = cache.library_digest()
    memos = list((tmp_path / "code").iterdir())
    assert len(memos) > 20  # one per module
    memos[0].write_text("not hex")
    memos[1].write_text("ab")  # truncated
    cache.library_digest.cache_clear()
    assert cache.library_digest() == first
    for m in memos[:2]:
        m.unlink()

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_atomic", full)  # a full or read-only cache: computed, not remembered
    cache.library_digest.cache_clear()
    assert cache.library_digest() == first
    assert not memos[0].exists()
    cache.library_digest.cache_clear()


def test_no_page_and_no_cached_step_imports_the_command_line_or_the_regime_study():
    import ast
    from pathlib import Path

    root = Path(cache.__file__).resolve().parents[2]
    lib = root / "lib" / "ccs"  # the library outside ccs/cli, its subpackages (ccs.datasets, ccs.llm, ...) included
    modules = [p for p in lib.rglob("*.py") if "cli" not in p.relative_to(lib).parts[:-1]]
    sources = [*root.joinpath("notebooks").glob("*.py"), *modules]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not any(n == "ccs.cli" or n.startswith("ccs.cli.") for n in names), (path, names)
            inside = "regime" in path.relative_to(lib).parts[:-1] if path.is_relative_to(lib) else False
            assert inside or not any(n == "ccs.regime" or n.startswith("ccs.regime.") for n in names), (path, names)
