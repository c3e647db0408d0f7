"""The API key is never printed: `ccs.redact` and the `error:` line (and --debug traceback) of every
command, here `ccs run`, whose kernel's traceback can carry a server's message that echoes the key."""

import pytest

from ccs.redact import redact

SECRET = "sk-test-SECRET-do-not-leak-4242"


@pytest.mark.parametrize(
    "text, kept",
    [
        ("Incorrect API key provided: Bearer " + SECRET, "Incorrect API key provided: Bearer ***"),
        ("{'message': 'Incorrect API key provided: " + SECRET[:20] + "...'}", "Incorrect API key provided: "),
        ("Authorization: Bearer some-other-token-value", "Authorization: Bearer ***"),
        ("header basic dXNlcjpwYXNz was sent", "header basic ***"),
        ("sk-proj-abcdefghijklmnop leaked", "sk-*** leaked"),
        ("the key ends in SECRET-do-not-leak", "the key ends in ***"),
    ],
)
def test_redact_masks_keys_whole_cut_and_echoed(monkeypatch, text, kept):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = redact(text)
    assert kept in out and SECRET not in out and SECRET[3:15] not in out, out


def test_redact_keeps_ordinary_text(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    text = "the LLM endpoint http://127.0.0.1:8000/v1 (model gpt-4o-mini) failed 3 attempts: HTTP 503"
    assert redact(text) == text
    monkeypatch.setenv("OPENAI_API_KEY", "x")  # a placeholder key masks only itself, as a word
    assert redact("key x, and the text around it") == "key ***, and the text around it"


def test_ccs_run_error_line_never_shows_the_key(monkeypatch, tmp_path):
    """A notebook whose kernel fails with a message echoing the key (papermill's error carries the
    kernel's traceback): the error line and the --debug traceback show it masked."""
    from papermill.exceptions import PapermillExecutionError
    from typer.testing import CliRunner

    from ccs import pipeline
    from ccs.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    echoed = (
        f"openai.AuthenticationError: Error code: 401 - {{'error': {{'message': 'Incorrect API key provided: Bearer {SECRET}'}}}}"
    )

    def execute(*args, **kwargs):
        raise PapermillExecutionError(
            cell_index=3,
            exec_count=3,
            source="table = scores.score_heads(...)",
            ename="AuthenticationError",
            evalue=echoed,
            traceback=["Traceback (most recent call last)", echoed],
        )

    monkeypatch.setattr(pipeline, "execute_in_turn", execute)
    for args in ([], ["--debug"]):
        result = CliRunner().invoke(app, [*args, "run", "ccs-tiny", "ccs", "-p", "backend=openai"])
        assert result.exit_code == 1 and "error:" in result.output, result.output
        assert "Incorrect API key provided: Bearer ***" in result.output
        assert SECRET not in result.output and SECRET[:12] not in result.output
        assert ('File "' in result.output) == bool(args)  # the Python traceback with --debug only
