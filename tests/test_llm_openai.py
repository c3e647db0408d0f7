"""The openai backend against a local chat-completions server on a real socket: scripted 429 (with
Retry-After), 500, timeouts, HTML pages, malformed and off-vocabulary answers; hung and closed
endpoints; retries, validation, the response cache (keyed by endpoint, corrupt files), an
interrupted run, a run whose endpoint dies, `ccs heads`, and the API key never leaving the request
header."""

from __future__ import annotations

import email.utils
import inspect
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ccs import llm, scores
from ccs.llm import endpoint, prompts

SECRET = "sk-test-SECRET-do-not-leak-4242"
HEAD = [
    "Photo taken in Rio de Janeiro",
    "Picture taken in Cyprus",
    "Image shot in Kyoto",
    "Photograph taken in Lisbon",
    "A bowl of ramen",
]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: deque = deque()  # scripted actions, consumed one per request
        self.requests: list[dict] = []
        self.answered = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def _default(body: dict) -> tuple:
    """Unscripted requests: a label prompt gets 'location', a judge prompt '1' unless about ramen."""
    last = body["messages"][-1]["content"]
    if last.endswith("Concept:"):
        return ("ok", "location")
    return ("ok", "0" if "ramen" in last else "1")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv: Server = self.server
        srv.requests.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body, "time": time.monotonic()}
        )
        action = srv.script.popleft() if srv.script else _default(body)
        kind = action[0]
        if kind == "default":
            action = _default(body)
        if kind == "sleep":  # longer than the client's timeout: the client gives up first
            time.sleep(action[1])
            action = ("ok", action[2])
        if kind == "status":  # ("status", code[, headers[, message, in which {auth} is the header]])
            message = action[3] if len(action) > 3 else f"scripted {action[1]}"
            message = message.replace("{auth}", self.headers.get("Authorization", ""))
            return self._send(
                action[1], {"error": {"message": message, "type": "x"}}, headers=action[2] if len(action) > 2 else {}
            )
        if kind == "html":  # a proxy's login or error page, served with status 200
            page = action[1] if len(action) > 1 else "<html><body><h1>Please log in</h1></body></html>"
            return self._send(
                200,
                page.replace("{auth}", self.headers.get("Authorization", "")).encode(),
                content_type=action[2] if len(action) > 2 else "text/html",
            )
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": action[1]}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )
        srv.answered += 1

    def _send(self, code: int, payload: dict | bytes, headers: dict | None = None, content_type: str = "application/json"):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


def start() -> Server:
    srv = Server()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv


def stop(srv: Server) -> None:
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server():
    srv = start()
    yield srv
    stop(srv)


@pytest.fixture
def hung_url():
    """An endpoint that accepts connections and never answers (the kernel queues them)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


@pytest.fixture
def closed_url():
    """An endpoint whose port nobody listens on: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def env(monkeypatch, server):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)


def make(tmp_path, **kw) -> llm.OpenAIBackend:
    options = dict(model="test-model", timeout=0.5, retries=4, backoff=0.01, cache=tmp_path / "cache")
    return llm.OpenAIBackend(**{**options, **kw})


def test_label_and_judge_over_the_protocol(env, server, tmp_path):
    b = llm.backend("openai", **dict(model="test-model", cache=tmp_path / "cache", backoff=0.01))
    r = scores.score_head(HEAD, b)
    assert r == {"label": "location", "judgements": [1, 1, 1, 1, 0], "ccs": 4.0, "flagged": False}
    assert len(server.requests) == 6 and all(q["path"] == "/v1/chat/completions" for q in server.requests)
    first = server.requests[0]
    assert first["auth"] == f"Bearer {SECRET}" and first["body"]["model"] == "test-model"
    msgs = first["body"]["messages"]
    assert msgs[0]["role"] == "system" and "colour" in msgs[0]["content"]  # the vocabulary is offered
    assert sum(m["role"] == "assistant" for m in msgs) == len(llm.LABEL_EXAMPLES)  # few-shot
    assert "5. A bowl of ramen" in msgs[-1]["content"]


def test_retries_on_429_500_and_timeout(env, server, tmp_path):
    server.script.extend([("status", 429), ("status", 500), ("sleep", 1.0, "colour"), ("ok", "colour")])
    b = make(tmp_path)
    assert b.label(HEAD) == "colour"
    assert len(server.requests) == 4 and b.requests == 4


def test_gives_up_after_the_retries(env, server, tmp_path):
    """Persistent 503s are an endpoint failure, not an invalid answer: EndpointError, one line that
    names the endpoint, the model and the last failure, and says a rerun continues."""
    server.script.extend([("status", 503)] * 3)
    with pytest.raises(llm.EndpointError) as failure:
        make(tmp_path, retries=2).judge("a red circle", "colour")
    assert len(server.requests) == 3
    message = str(failure.value)
    assert "\n" not in message and server.url in message and "test-model" in message
    assert "HTTP 503" in message and "cached" in message and "rerun continues" in message
    assert not isinstance(failure.value, llm.InvalidAnswer)


def test_failure_then_invalid_answers_is_an_invalid_answer(env, server, tmp_path):
    """The last failure decides: an endpoint that recovers but answers badly flags the head."""
    server.script.extend([("status", 503), ("ok", "banana"), ("ok", "banana")])
    assert make(tmp_path, retries=2).label(HEAD) == llm.UNKNOWN
    server.script.extend([("ok", "banana"), ("ok", "banana"), ("status", 500)])
    with pytest.raises(llm.EndpointError, match="HTTP 500"):
        make(tmp_path, retries=2).label(HEAD)


def test_invalid_answers_are_retried_and_validated(env, server, tmp_path):
    server.script.extend([("ok", "The concept is colour."), ("ok", "banana"), ("ok", "Colors.")])
    b = make(tmp_path)
    assert b.label(HEAD) == "colour"  # a synonym normalised to the vocabulary's name
    retry = server.requests[1]["body"]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "The concept is colour."}
    assert "one word" in retry[-1]["content"]
    server.script.extend([("ok", "Yes"), ("ok", "2"), ("ok", " 1 ")])
    assert b.judge("Vibrant magenta", "colour") == 1
    assert len(server.requests) == 6


def test_stubborn_answers_flag_the_head_or_raise(env, server, tmp_path):
    server.script.extend([("ok", "banana")] * 3 + [("ok", "maybe")] * 3)
    b = make(tmp_path, retries=2)
    assert b.label(HEAD) == llm.UNKNOWN  # flagged, not cached: a rerun asks again
    with pytest.raises(llm.InvalidAnswer):
        b.judge(HEAD[0], "location")
    assert not list((tmp_path / "cache").glob("*.json"))


def test_unknown_is_not_an_answer(env, server, tmp_path):
    """The paper's labeler always names a concept: 'unknown' is retried like any invalid answer."""
    server.script.extend([("ok", "unknown"), ("ok", "location")])
    assert make(tmp_path).label(HEAD) == "location" and len(server.requests) == 2
    assert "unknown" not in server.requests[0]["body"]["messages"][0]["content"]


def test_free_labels_without_vocabulary(env, server, tmp_path):
    server.script.extend([("ok", "Geolocation")])
    assert make(tmp_path, vocab=False).label(HEAD) == "geolocation"
    assert "Choose it from this list" not in server.requests[0]["body"]["messages"][0]["content"]


def test_rerun_is_served_from_the_cache(env, server, tmp_path):
    first = scores.score_head(HEAD, make(tmp_path))
    sent = len(server.requests)
    again = make(tmp_path)
    assert scores.score_head(HEAD, again) == first
    assert again.requests == 0 and len(server.requests) == sent
    other_model = make(tmp_path, model="another-model")  # the key includes the model
    scores.score_head(HEAD, other_model)
    assert other_model.requests == 6


def test_interrupted_run_loses_no_answer(env, server, tmp_path):
    """Kill a labelling process midway: every answer it received is on disk, whole, and the rerun
    asks only for the rest."""
    cache = tmp_path / "cache"
    texts = [f"Photo number {i} taken in Lisbon" for i in range(12)]
    code = (
        "import sys; from ccs import llm\n"
        f"b = llm.OpenAIBackend(model='test-model', cache={str(cache)!r}, backoff=0.01)\n"
        f"for t in {texts!r}: b.judge(t, 'location'); print('judged', flush=True)\n"
    )
    server.script.extend([("ok", "1")] * 5 + [("sleep", 30.0, "1")])  # the 6th request hangs
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 30
    while len(server.requests) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    out, err = proc.communicate()
    assert len(server.requests) == 6, err
    files = list(cache.glob("*.json"))
    assert len(files) == 5 and not list(cache.glob(".tmp-*"))
    assert all(json.loads(f.read_text())["answer"] == 1 for f in files)
    server.script.clear()
    rerun = make(tmp_path)
    assert [rerun.judge(t, "location") for t in texts] == [1] * 12
    assert rerun.requests == 7


def test_key_appears_in_no_output(env, server, tmp_path, caplog, capsys, closed_url, monkeypatch):
    caplog.set_level(logging.DEBUG)  # the openai client and httpx log requests at DEBUG
    server.script.extend(
        [("status", 429), ("ok", "not a concept"), ("ok", "colour"), ("status", 401, {}, "Incorrect API key provided: {auth}")]
    )
    b = make(tmp_path)
    assert b.label(HEAD) == "colour"
    with pytest.raises(llm.EndpointRejected) as failure:  # not retried: a wrong key stays wrong
        b.judge(HEAD[0], "colour")
    assert "HTTP 401" in str(failure.value) and "Bearer ***" in str(failure.value)
    errors = [failure.value]
    # the new failures: Retry-After, a page that echoes the Authorization header, a refused connection
    echo = ("html", "<p>{auth}</p>")
    server.script.extend([("status", 429, {"Retry-After": "0"}), echo, echo, echo])
    with pytest.raises(llm.EndpointError) as failure:
        make(tmp_path, retries=2).judge(HEAD[1], "colour")
    assert "not a chat completion" in str(failure.value) and "***" in str(failure.value)
    errors.append(failure.value)
    monkeypatch.setenv("OPENAI_BASE_URL", closed_url)
    with pytest.raises(llm.EndpointError) as failure:
        make(tmp_path, retries=1).judge(HEAD[2], "colour")
    errors.append(failure.value)
    texts = [caplog.text, *capsys.readouterr(), repr(b)]
    texts += [t for e in errors for t in (str(e), repr(e), str(e.__cause__), repr(e.__cause__))]
    texts += [f.read_text() for f in Path(tmp_path / "cache").rglob("*") if f.is_file()]
    assert caplog.text  # something was logged, and it is clean
    assert not [t for t in texts if SECRET in t]


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        llm.backend("openai", cache=tmp_path)


# --- endpoints that are dead, slow to allow, or speaking something else -----------------------------


def test_hanging_endpoint_is_an_error_within_the_bound(env, hung_url, tmp_path):
    b = make(tmp_path, base_url=hung_url, timeout=0.3, retries=2, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(llm.EndpointError) as failure:
        b.judge(HEAD[0], "location")
    elapsed = time.monotonic() - start
    assert 3 * 0.3 <= elapsed <= llm.OpenAIBackend.worst_case(0.3, 2, 0.05) + 0.5
    message = str(failure.value)
    assert "\n" not in message and hung_url in message and "test-model" in message
    assert "no reply within 0.3 s" in message and "--timeout" in message and "rerun continues" in message
    assert SECRET not in message and b.requests == 3


def test_closed_port_is_an_error_quickly(env, closed_url, tmp_path):
    b = make(tmp_path, base_url=closed_url, timeout=0.3, retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(llm.EndpointError) as failure:
        b.label(HEAD)  # not 'unknown': nothing was answered
    assert time.monotonic() - start < 1.0
    message = str(failure.value)
    assert "\n" not in message and closed_url in message and "refused" in message.lower()
    assert SECRET not in message and b.requests == 3


def test_defaults_fail_a_dead_endpoint_within_a_minute(env, tmp_path):
    """The defaults, in the backend, `ccs heads` and the notebook: a question on a hung endpoint gives
    up within a minute (every attempt times out, every pause is its longest), a refused or
    unroutable connection sooner (5 s to connect)."""
    defaults = {k: p.default for k, p in inspect.signature(llm.OpenAIBackend).parameters.items()}
    assert (defaults["timeout"], defaults["retries"], defaults["backoff"]) == (llm.TIMEOUT, llm.RETRIES, llm.BACKOFF)
    timeout, retries, backoff = llm.TIMEOUT, llm.RETRIES, llm.BACKOFF
    bound = timeout * (retries + 1) + sum(min(backoff * 2**i, llm.MAX_BACKOFF) for i in range(retries))
    assert bound == llm.OpenAIBackend.worst_case() <= 60
    client_timeout = llm.OpenAIBackend(cache=tmp_path)._client.timeout
    assert client_timeout.read == timeout and client_timeout.connect <= 5
    from ccs.cli.scores import heads

    options = {k: p.default.default for k, p in inspect.signature(heads).parameters.items()}
    assert (options["timeout"], options["retries"]) == (timeout, retries)
    cell = (Path(__file__).parents[1] / "notebooks" / "ccs.py").read_text()
    assert float(re.search(r"^llm_timeout = (\S+)", cell, re.M)[1]) == timeout
    assert int(re.search(r"^llm_retries = (\S+)", cell, re.M)[1]) == retries


@pytest.mark.parametrize(
    "options, message",
    [
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"timeout": -1.0}, "timeout must be"),
        ({"timeout": "20"}, "timeout must be"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"retries": 1.5}, "retries must be"),
        ({"backoff": -0.1}, "backoff must be"),
    ],
)
def test_timeouts_and_retries_are_validated(env, tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        llm.backend("openai", cache=tmp_path, **options)


def test_retry_after_is_honoured(env, server, tmp_path):
    """A 429 or 503 saying how long to wait (seconds, or an HTTP date) is waited out, not backed off."""
    server.script.extend([("status", 429, {"Retry-After": "1"}), ("ok", "colour")])
    b = make(tmp_path, backoff=0.01)
    assert b.label(HEAD) == "colour"
    waited = server.requests[1]["time"] - server.requests[0]["time"]
    assert 0.95 <= waited < 1.8
    date = email.utils.formatdate(time.time() + 1.5, usegmt=True)  # whole seconds: 0.5 to 1.5 s ahead
    server.script.extend([("status", 503, {"Retry-After": date}), ("ok", "1")])
    assert b.judge(HEAD[0], "colour") == 1
    waited = server.requests[3]["time"] - server.requests[2]["time"]
    assert 0.4 <= waited < 1.8


def test_retry_after_values():
    class Response:
        def __init__(self, **headers):
            self.headers = {k.replace("_", "-"): v for k, v in headers.items()}

    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert endpoint._retry_after(Response(retry_after="2")) == 2.0
    assert endpoint._retry_after(Response(retry_after="3600")) == llm.MAX_RETRY_AFTER == 60  # capped
    assert 28 <= endpoint._retry_after(Response(retry_after=soon)) <= 30
    assert endpoint._retry_after(Response(retry_after="Mon, 01 Jan 1990 00:00:00 GMT")) == 0.0  # past
    assert endpoint._retry_after(Response(retry_after_ms="250", retry_after="1")) == 0.25
    assert endpoint._retry_after(Response(retry_after="soon")) is None
    assert endpoint._retry_after(Response()) is None


def test_html_replies_are_retried_then_an_error(env, server, tmp_path):
    server.script.extend([("html",), ("ok", "colour")])
    b = make(tmp_path, retries=2)
    assert b.label(HEAD) == "colour" and len(server.requests) == 2
    server.script.extend([("html",)] * 3)
    with pytest.raises(llm.EndpointError) as failure:
        b.judge(HEAD[0], "colour")
    message = str(failure.value)
    assert "not a chat completion" in message and "<html>" in message and server.url in message
    assert "\n" not in message and len(server.requests) == 5


def test_garbled_json_is_retried(env, server, tmp_path):
    json_type = "application/json"
    server.script.extend(
        [
            ("html", '{"choices": [{"mess', json_type),
            ("html", '{"id": "x"}', json_type),
            ("html", '{"choices": []}', json_type),
            ("ok", "1"),
        ]
    )
    assert make(tmp_path, retries=3).judge(HEAD[0], "location") == 1 and len(server.requests) == 4


def test_the_cache_is_keyed_by_the_endpoint(env, server, tmp_path):
    """The same model name at another endpoint is another model: asked again, not served from the
    answers of the first."""
    other = start()
    try:
        first = make(tmp_path)
        assert first.judge(HEAD[0], "location") == 1 and len(server.requests) == 1
        second = make(tmp_path, base_url=other.url)
        other.script.append(("ok", "0"))
        assert second.judge(HEAD[0], "location") == 0
        assert second.requests == 1 and len(other.requests) == 1
        again = make(tmp_path)  # each endpoint keeps its own answer
        assert again.judge(HEAD[0], "location") == 1 and again.requests == 0
        assert make(tmp_path, base_url=other.url).judge(HEAD[0], "location") == 0
        records = [json.loads(f.read_text()) for f in (tmp_path / "cache").glob("*.json")]
        assert sorted(r["endpoint"] for r in records) == sorted([server.url, other.url])
    finally:
        stop(other)


@pytest.mark.parametrize("corruption", ['{"model": "test-model", "ans', '{"model": "test-model"}', "[1]"])
def test_a_corrupt_cache_file_is_replaced(env, server, tmp_path, caplog, corruption):
    assert make(tmp_path).judge(HEAD[0], "location") == 1
    (path,) = (tmp_path / "cache").glob("*.json")
    path.write_text(corruption)
    server.script.append(("ok", "0"))
    b = make(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ccs.llm"):
        assert b.judge(HEAD[0], "location") == 0
    assert b.requests == 1 and str(path) in caplog.text and "corrupt" in caplog.text
    assert json.loads(path.read_text())["answer"] == 0
    assert make(tmp_path).judge(HEAD[0], "location") == 0  # served from the new file


def test_an_endpoint_dying_midway_stops_the_run(env, server, tmp_path):
    """score_heads over heads whose endpoint starts failing after 8 answers: EndpointError, not heads
    labelled unknown; the 8 answers are cached and a rerun asks only for the other 10."""
    heads = [{"layer": 11, "head": h, "texts": [f"{t} ({h})" for t in HEAD]} for h in range(3)]
    server.script.extend([("default",)] * 8 + [("status", 502)] * 10)
    b = make(tmp_path, retries=2)
    with pytest.raises(llm.EndpointError, match="HTTP 502"):
        scores.score_heads(heads, b)
    assert b.answers == 8 and len(list((tmp_path / "cache").glob("*.json"))) == 8
    server.script.clear()
    rerun = make(tmp_path)
    table = scores.score_heads(heads, rerun)
    assert rerun.requests == 10 and list(table["label"]) == ["location"] * 3
    assert list(table["ccs"]) == [4.0] * 3 and not table["flagged"].any()


def _cli(tmp_path, monkeypatch, *args):
    from typer.testing import CliRunner

    from ccs.cli import app

    monkeypatch.setenv("CCS_CACHE", str(tmp_path / "ccs-cache"))
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"layer": 11, "head": 5, "texts": HEAD}]))
    return CliRunner().invoke(app, ["heads", "--backend", "openai", "--judge-model", "test-model", "--records", str(path), *args])


def test_cli_heads_stops_on_a_dead_endpoint(env, closed_url, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", closed_url)
    start_ = time.monotonic()
    result = _cli(tmp_path, monkeypatch, "--timeout", "0.3", "--retries", "1")
    assert time.monotonic() - start_ < 5
    assert result.exit_code == 1 and result.output.startswith("error:"), result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert closed_url in result.output and "test-model" in result.output and SECRET not in result.output
    assert result.stdout == ""  # the error goes to stderr


def test_cli_heads_over_a_live_endpoint_and_bad_options(env, server, tmp_path, monkeypatch):
    result = _cli(tmp_path, monkeypatch, "--timeout", "2", "--retries", "1", "--json")
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)
    assert (r["label"], r["ccs"], r["judgements"]) == ("location", 4, [1, 1, 1, 1, 0])
    for option, value, message in (("--timeout", "0", "timeout"), ("--retries", "-1", "retries")):
        result = _cli(tmp_path, monkeypatch, option, value)
        assert result.exit_code == 1 and result.output.startswith(f"error: the LLM {message} must be")
        assert result.output.count("\n") == 1, result.output


# --- issue 22: an echoed key, answers validated when read, one rule for invalid answers ------------

TRUNCATED = SECRET[:20] + "..."  # a server that shows the start of the key


@pytest.mark.parametrize(
    "echo",
    ["Incorrect API key provided: {auth}", "Incorrect API key provided: " + TRUNCATED, "bad key " + SECRET + " (check it)"],
)
def test_a_key_echoed_by_the_server_is_scrubbed(env, server, tmp_path, monkeypatch, caplog, echo):
    """A 401 whose message echoes the Authorization header (or the key, whole or cut): one error
    naming the endpoint and the status, no key in it, its cause or its context; the same through
    `ccs heads --backend openai`, in its error line and in its --debug traceback."""
    server.script.append(("status", 401, {}, echo))
    with pytest.raises(llm.EndpointRejected) as failure:
        make(tmp_path).judge(HEAD[0], "colour")
    e = failure.value
    assert len(server.requests) == 1  # a wrong key is not retried
    message = str(e)
    assert "HTTP 401" in message and server.url in message and "OPENAI_API_KEY" in message
    assert "Incorrect API key" in message or "bad key" in message  # the server's words are kept
    assert e.__cause__ is None and e.__context__ is None
    for text in (message, repr(e)):
        assert SECRET not in text and SECRET[:12] not in text and "Bearer sk-" not in text
    for args in ([], ["--debug"]):
        server.script.append(("status", 401, {}, echo))
        from typer.testing import CliRunner

        from ccs.cli import app

        monkeypatch.setenv("CCS_CACHE", str(tmp_path / "ccs-cache"))
        records = tmp_path / "records.json"
        records.write_text(json.dumps([{"layer": 11, "head": 5, "texts": HEAD}]))
        result = CliRunner().invoke(
            app,
            [*args, "heads", "--backend", "openai", "--judge-model", "test-model", "--records", str(records), "--retries", "0"],
        )
        assert result.exit_code == 1 and "error:" in result.output and "HTTP 401" in result.output, result.output
        assert SECRET not in result.output and SECRET[:12] not in result.output
        assert ("Traceback" in result.output) == bool(args)
    assert SECRET not in caplog.text and SECRET[:12] not in caplog.text


def _judge_files(tmp_path):
    return [
        f
        for f in (tmp_path / "cache").glob("*.json")
        if json.loads(f.read_text())["messages"][-1]["content"].startswith("Concept:")
    ]


def _sealed(record):
    """A record with a checksum that matches it: only the validation of the answer can catch it."""
    return {**record, "crc32": llm.ResponseCache.checksum(record)}


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda r: _sealed({**r, "answer": 7}), "invalid answer 7"),  # would count as 7 matches: CCS 35
        (lambda r: _sealed({**r, "answer": "1"}), "invalid answer '1'"),  # a string, not the judgement 1
        (lambda r: _sealed({**r, "answer": True}), "invalid answer True"),
        (lambda r: {k: v for k, v in r.items() if k != "crc32"} | {"answer": 2}, "invalid answer 2"),  # an older record
        (lambda r: {**r, "answer": 1 - r["answer"]}, "checksum mismatch"),  # valid, but not what was received
        (lambda r: _sealed({**r, "messages": r["messages"][:-1]}), "another question"),
    ],
    ids=["seven", "string", "bool", "no-checksum", "flipped", "other-question"],
)
def test_cached_judgements_are_validated_when_read(env, server, tmp_path, caplog, damage, problem):
    """A cached judgement passes the validation of an answer on receipt (and its checksum) or it is
    reported with its path, deleted and asked again: a cached 7 never makes a CCS of 35."""
    first = scores.score_head(HEAD, make(tmp_path))
    assert first["ccs"] == 4
    files = _judge_files(tmp_path)
    assert len(files) == 5
    for f in files:
        f.write_text(json.dumps(damage(json.loads(f.read_text()))))
    again = make(tmp_path)
    with caplog.at_level(logging.WARNING, logger="ccs.llm"):
        r = scores.score_head(HEAD, again)
    assert r == first and again.requests == 5  # asked again, never used
    assert all(str(f) in caplog.text for f in files) and caplog.text.count(problem) == 5, caplog.text
    assert all(json.loads(f.read_text())["answer"] in (0, 1) for f in files)  # rewritten
    caplog.clear()
    third = make(tmp_path)
    assert scores.score_head(HEAD, third) == first and third.requests == 0 and not caplog.text


@pytest.mark.parametrize(
    "vocab, answer",
    [(True, "The concept is location"), (True, "banana"), (True, "unknown"), (False, "two words"), (True, ["location"])],
)
def test_cached_labels_are_validated_when_read(env, server, tmp_path, caplog, vocab, answer):
    assert make(tmp_path, vocab=vocab).label(HEAD) == "location"
    (f,) = (tmp_path / "cache").glob("*.json")
    f.write_text(json.dumps(_sealed({**json.loads(f.read_text()), "answer": answer})))
    b = make(tmp_path, vocab=vocab)
    with caplog.at_level(logging.WARNING, logger="ccs.llm"):
        assert b.label(HEAD) == "location"
    assert b.requests == 1 and str(f) in caplog.text and "invalid answer" in caplog.text


def _heads(n):
    return [{"layer": 11, "head": h, "texts": [f"{t} ({h})" for t in HEAD]} for h in range(n)]


def test_invalid_labels_fail_the_run_naming_the_endpoint_and_the_labeler(env, server, tmp_path):
    """Every label answer is off the vocabulary: not a table of 'unknown' heads with exit 0, but an
    error that says how many label questions failed, from which endpoint; it stops as soon as more
    than the allowed share of the announced questions have failed."""
    server.script.extend([("ok", "banana")] * 100)
    b = make(tmp_path, retries=1)
    with pytest.raises(llm.TooManyInvalid) as failure:
        scores.score_heads(_heads(8), b)
    message = str(failure.value)
    assert "labeler" in message and server.url in message and "test-model" in message
    assert "1 of the 8 questions of this run (1 asked so far)" in message and "10%" in message and "'banana'" in message
    assert len(server.requests) == 2 and "\n" not in message


def test_invalid_judgements_fail_the_run_naming_the_endpoint_and_the_judge(env, server, tmp_path):
    """Judge answers that fail validation follow the same rule: counted, named, the run fails."""
    server.script.extend([("ok", "location")] + [("ok", "maybe")] * 100)
    b = make(tmp_path, retries=1)
    with pytest.raises(llm.TooManyInvalid) as failure:
        scores.score_heads(_heads(2), b)
    message = str(failure.value)
    assert "judge" in message and "labeler" not in message and server.url in message
    assert "2 of the 10 questions of this run (2 asked so far)" in message and "'maybe'" in message
    assert b.invalid == {"labeler": 0, "judge": 2}


def test_a_few_invalid_answers_flag_their_heads_and_are_counted(env, server, tmp_path, caplog, monkeypatch):
    """Within the allowed share: the heads are flagged (no CCS), the run goes on, and the end of the
    run logs how many answers of each role failed, from which endpoint. Over it (max_invalid=0.05):
    the same run fails, naming the role and the count."""
    heads = _heads(12)
    bad = {
        prompts.label_prompt(heads[3]["texts"], True)[-1]["content"]: "banana",
        prompts.judge_prompt(heads[7]["texts"][0], "location")[-1]["content"]: "maybe",
    }

    default = _default

    def scripted(body):
        asked = [m["content"] for m in body["messages"] if m["role"] == "user"]
        question = asked[-2] if asked[-1].startswith("Answer with") else asked[-1]  # a retry repeats it
        return ("ok", bad[question]) if question in bad else default(body)

    monkeypatch.setitem(globals(), "_default", scripted)  # the handler looks it up at every request
    with caplog.at_level(logging.WARNING, logger="ccs.llm"):
        table = scores.score_heads(heads, make(tmp_path, retries=1))
    assert list(table["flagged"]) == [h in (3, 7) for h in range(12)]
    assert table["ccs"].isna().sum() == 2 and table.loc[7, "label"] == "location"
    assert "labeler: 1 of 12 questions without a valid answer; judge: 1 of 55" in caplog.text
    assert server.url in caplog.text
    with pytest.raises(
        llm.TooManyInvalid,
        match=r"the labeler test-model at .*: 1 of the 12 questions of "
        r"this run \(4 asked so far\) .* more than the 5% allowed",
    ):
        scores.score_heads(heads, make(tmp_path, retries=1, max_invalid=0.05))


def test_max_invalid_is_validated(env, tmp_path):
    for value in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="max_invalid must be a share between 0 and 1"):
            make(tmp_path, max_invalid=value)


def test_cli_heads_fails_on_invalid_labels(env, server, tmp_path, monkeypatch):
    """`ccs heads --backend openai` whose labels all fail validation: exit 1 with one error line that
    names the endpoint and the labeler (it printed every head 'unknown' and exited 0)."""
    server.script.extend([("ok", "banana")] * 10)
    result = _cli(tmp_path, monkeypatch, "--retries", "1")
    assert result.exit_code == 1 and result.output.startswith("error: the labeler test-model at "), result.output
    assert server.url in result.output and "1 of 1 questions got no valid answer" in result.output
    result = _cli(tmp_path, monkeypatch, "--retries", "1", "--max-invalid", "1")  # allowed: flagged
    assert result.exit_code == 0 and "unknown" in result.output, result.output
