"""The openai backend against a local chat-completions server on a real socket: scripted 429, 500,
timeouts, malformed and off-vocabulary answers; retries, validation, the response cache, an
interrupted run, and the API key never leaving the request header."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

from ccs import llm, scores

SECRET = "sk-test-SECRET-do-not-leak-4242"
HEAD = ["Photo taken in Rio de Janeiro", "Picture taken in Cyprus", "Image shot in Kyoto",
        "Photograph taken in Lisbon", "A bowl of ramen"]


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
        srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        action = srv.script.popleft() if srv.script else _default(body)
        kind = action[0]
        if kind == "sleep":  # longer than the client's timeout: the client gives up first
            time.sleep(action[1])
            action = ("ok", action[2])
        if kind == "status":
            return self._send(action[1], {"error": {"message": f"scripted {action[1]}", "type": "x"}})
        self._send(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": action[1]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        srv.answered += 1

    def _send(self, code: int, payload: dict):
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


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
    server.script.extend([("status", 503)] * 3)
    with pytest.raises(llm.InvalidAnswer):
        make(tmp_path, retries=2).judge("a red circle", "colour")
    assert len(server.requests) == 3


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
    code = ("import sys; from ccs import llm\n"
            f"b = llm.OpenAIBackend(model='test-model', cache={str(cache)!r}, backoff=0.01)\n"
            f"for t in {texts!r}: b.judge(t, 'location'); print('judged', flush=True)\n")
    server.script.extend([("ok", "1")] * 5 + [("sleep", 30.0, "1")])  # the 6th request hangs
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def test_key_appears_in_no_output(env, server, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG)  # the openai client and httpx log requests at DEBUG
    server.script.extend([("status", 429), ("ok", "not a concept"), ("ok", "colour"), ("status", 401)])
    b = make(tmp_path)
    assert b.label(HEAD) == "colour"
    with pytest.raises(openai.AuthenticationError) as failure:  # not retried: a wrong key stays wrong
        b.judge(HEAD[0], "colour")
    texts = [caplog.text, *capsys.readouterr(), str(failure.value), repr(failure.value), repr(b)]
    texts += [f.read_text() for f in Path(tmp_path / "cache").rglob("*") if f.is_file()]
    assert caplog.text  # something was logged, and it is clean
    assert not [t for t in texts if SECRET in t]


def test_missing_key_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        llm.backend("openai", cache=tmp_path)
