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
    assert len({before, one, two}) == 3
    # the command line is not what a page computes with: changing it re-executes nothing
    (fake / "cli").mkdir()
    (fake / "cli" / "heads.py").write_text("z = 3\n")
    assert cache.library_digest() == two
    cache.library_digest.cache_clear()
    (fake / "regime.py").write_text("w = 4\n")  # nor is the regime study
    assert cache.library_digest() == two
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
            assert path.name == "regime.py" or "ccs.regime" not in names, (path, names)
