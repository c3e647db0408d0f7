"""The ``openai`` backend: `OpenAIBackend`, chat completions against any OpenAI-compatible endpoint,
with the few-shot prompts of `ccs.llm.prompts`, answer validation, retries with backoff, errors (InvalidAnswer,
EndpointError, EndpointRejected, TooManyInvalid) and on-disk `ResponseCache`.

Named ``endpoint``, not ``openai``, so that it never shadows the ``openai`` client package."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import time
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ccs.cache import cache_dir, write_atomic
from ccs.llm.concepts import UNKNOWN, _word, normalise
from ccs.llm.prompts import judge_prompt, label_prompt
from ccs.redact import redact

log = logging.getLogger("ccs.llm")  # the package's logger, as before it was split into modules


class InvalidAnswer(ValueError):
    """The endpoint kept answering one question outside the allowed form (the message names the
    endpoint, the model and the role, labeler or judge): the head is flagged, not scored."""


class EndpointError(RuntimeError):
    """The endpoint could not be reached or kept failing (timeouts, refused connections, 429 and 5xx,
    replies that are not chat completions) after the retries. Unlike answers that arrive but fail
    validation (a head labelled ``unknown``), this stops the run: the answers received before it are
    cached, so a rerun continues where it stopped."""


class EndpointRejected(EndpointError):
    """The endpoint refused a request in a way no retry mends (401 wrong key, 403, 404 unknown model
    or path, 400 bad request): the message says which, with the server's words scrubbed of the key."""


class TooManyInvalid(EndpointError):
    """More than the allowed share (``max_invalid``) of a role's questions got no valid answer: the
    run's labels or judgements would be mostly flags. The message says how many, of which role, from
    which endpoint; the valid answers are cached."""


ROLES = {"label": "labeler", "judge": "judge"}
# The share of a role's questions (labels, or judgements) that may end without a valid answer before
# the run fails (TooManyInvalid); those heads are flagged and not scored. `ccs heads --max-invalid`.
MAX_INVALID = 0.1


class _Transient(Exception):
    """One attempt failed in a way worth retrying: what happened, and how long the server asks to wait."""

    def __init__(self, what: str, retry_after: float | None = None):
        super().__init__(what)
        self.what, self.retry_after = what, retry_after


# Defaults chosen so that a dead endpoint (hung, or refusing connections) stops a run within a
# minute: every attempt waits at most TIMEOUT for a reply (and 5 s to connect), then BACKOFF doubles
# between attempts: at most 15 * 3 + 1 + 2 = 48 s a question (`OpenAIBackend.worst_case`). A slow
# endpoint that is alive needs a longer timeout (`ccs heads --timeout`, notebook `llm_timeout`).
TIMEOUT, RETRIES, BACKOFF = 15.0, 2, 1.0
CONNECT_TIMEOUT = 5.0
MAX_BACKOFF = 30.0  # the longest wait between attempts that the exponential backoff reaches
MAX_RETRY_AFTER = 60.0  # the longest wait a server's Retry-After gets


def _retry_after(response) -> float | None:
    """The seconds a 429/503 response asks for in ``Retry-After`` (seconds or an HTTP date; also the
    ``retry-after-ms`` of OpenAI), capped at MAX_RETRY_AFTER; None if it asks for nothing readable."""
    headers = getattr(response, "headers", None) or {}
    seconds = None
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
            break
        except ValueError:
            pass
        if name == "retry-after":
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.timezone.utc)
            seconds = (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cause(e: BaseException) -> str:
    """The innermost reason of a connection error, e.g. '[Errno 111] Connection refused'."""
    while e.__cause__ is not None and str(e.__cause__):
        e = e.__cause__
    return _one_line(str(e) or type(e).__name__)


def _content(reply, scrub: Callable[[str], str]) -> str:
    """The text of a chat completion's first choice; a reply that is not one (an HTML page a proxy
    served with status 200, JSON without choices) is a transient failure, shown by its start (scrubbed
    of the key before it is cut)."""
    from openai.types.chat import ChatCompletion

    choices = reply.choices if isinstance(reply, ChatCompletion) else None
    message = getattr(choices[0], "message", None) if isinstance(choices, list) and choices else None
    content = getattr(message, "content", None)
    if message is None or not isinstance(content, (str, type(None))):
        shown = (
            reply
            if isinstance(reply, str)
            else ("a chat completion without choices" if isinstance(reply, ChatCompletion) else type(reply).__name__)
        )
        raise _Transient(f"a reply that is not a chat completion: {_one_line(scrub(shown), 60)!r}")
    return content or ""


class ResponseCache:
    """Validated answers on disk, one JSON file per (endpoint, model, prompt); written atomically
    (temp + fsync + rename), so an interrupted run keeps every answer it received and never leaves a
    half-written file, and a full disk is an error naming the file. Each record carries a CRC-32 of
    its content. A file that is not a record of the question asked, fails its checksum or holds an
    answer that fails the validation an answer gets on receipt (corrupted by hand or by a disk) is
    deleted, with a warning naming it, and its question asked again."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def key(model: str, messages: list[dict], endpoint: str) -> str:
        """The file name of a question: the same model name at another endpoint is another model."""
        return hashlib.sha256(json.dumps([endpoint, model, messages], sort_keys=True).encode()).hexdigest()

    @staticmethod
    def checksum(record: dict) -> int:
        """The CRC-32 of a record's content (every field but the checksum itself)."""
        content = {k: v for k, v in record.items() if k != "crc32"}
        return zlib.crc32(json.dumps(content, sort_keys=True).encode())

    def get(self, key: str, check: Callable[[dict], tuple[object, str | None]] | None = None):
        """The cached answer of a question (None if there is none, or it was damaged and deleted).
        `check(record)` returns (the answer, None) or (None, what is wrong with the record); a
        record without a checksum (written by an earlier version) is accepted if it passes `check`."""
        path = self.folder / f"{key}.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # not JSON (or not UTF-8), a folder, unreadable
            problem = f"not JSON: {_one_line(e)}"
        else:
            if not isinstance(record, dict) or record.get("answer") is None:
                problem = "no answer in it"
            elif "crc32" in record and record["crc32"] != self.checksum(record):
                problem = "checksum mismatch (its contents changed after they were written)"
            else:
                answer, problem = check(record) if check else (record["answer"], None)
                if problem is None:
                    return answer
        log.warning("response cache file %s is corrupt (%s): deleted, the question is asked again", path, problem)
        path.unlink(missing_ok=True)
        return None

    def put(self, key: str, record: dict) -> None:
        record = {**record, "crc32": self.checksum(record)}
        write_atomic(self.folder / f"{key}.json", json.dumps(record).encode())


class OpenAIBackend:
    """Labeler and judge through an OpenAI-compatible chat-completions endpoint (see the `ccs.llm` docstring).

    Each question gets ``retries + 1`` attempts, each waiting at most ``timeout`` seconds for the
    reply, with an exponential ``backoff`` between them (or as long as a 429/503's ``Retry-After``
    asks, up to a minute). Answers that fail validation are asked again; when they still fail,
    `label` gives ``unknown`` and `judge` raises InvalidAnswer (`ccs.scores.score_head` flags the
    head either way). One rule for both roles: the questions of each role (labeler, judge) that end
    without a valid answer are counted (`invalid`, `questions`), and once more than ``max_invalid``
    of those `expect` announced did, TooManyInvalid stops the run,
    naming the endpoint, the role and the count; `check_answers` applies the rule at the end of a
    run and logs the count. Timeouts, refused connections, 429/5xx and replies that are not chat
    completions are retried too; when they persist, EndpointError stops the run (the answers
    received are cached: a rerun continues). A request the endpoint refuses (401, 403, 404, 400) is
    not retried: EndpointRejected. No message shows the API key, also when the server echoes it."""

    name = "openai"

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        *,
        vocab: bool = True,
        timeout: float = TIMEOUT,
        retries: int = RETRIES,
        backoff: float = BACKOFF,
        cache: str | Path | None = None,
        max_invalid: float = MAX_INVALID,
    ):
        import openai

        self.timeout, self.retries, self.backoff = _check_retrying(timeout, retries, backoff)
        if (
            isinstance(max_invalid, bool)
            or not isinstance(max_invalid, (int, float, np.integer, np.floating))
            or not 0 <= max_invalid <= 1
        ):
            raise ValueError(f"the LLM max_invalid must be a share between 0 and 1, not {max_invalid!r}")
        self.max_invalid = float(max_invalid)
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise RuntimeError(
                "the openai backend needs an API key in the environment variable "
                "OPENAI_API_KEY (any placeholder for a local server without keys)"
            )
        self.model, self.vocab = model, vocab
        # retries are ours (also on invalid answers), so the client's own are off
        self._client = openai.OpenAI(
            api_key=key,
            base_url=base_url or os.environ.get("OPENAI_BASE_URL"),
            timeout=openai.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT)),
            max_retries=0,
        )
        # the endpoint, normalised by the client; credentials in the URL are never shown nor stored
        url = self._client.base_url.copy_with(username=None, password=None)
        self._endpoint_key = str(url)  # the cache key keeps the query (e.g. an api-version)
        self.endpoint = str(url.copy_with(query=None)).rstrip("/")
        self.cache = ResponseCache(Path(cache) if cache else cache_dir("llm", "openai"))
        self.requests = 0  # requests sent to the endpoint (cache hits send none)
        self.answers = 0  # validated answers received (and cached) by this backend
        self.questions = dict.fromkeys(ROLES.values(), 0)  # per role: questions asked (cache hits too)
        self.invalid = dict.fromkeys(ROLES.values(), 0)  # per role: questions without a valid answer
        self.expected = dict.fromkeys(ROLES.values(), 0)  # per role: questions a run announced (`expect`)
        self._example: dict[str, str] = {}  # per role: the last invalid answer (scrubbed, shortened)

    @staticmethod
    def worst_case(timeout: float = TIMEOUT, retries: int = RETRIES, backoff: float = BACKOFF) -> float:
        """The longest one question waits on a dead endpoint (hung, or refusing connections) before
        EndpointError: every attempt times out, every pause is its longest backoff."""
        return timeout * (retries + 1) + sum(min(backoff * 2**i, MAX_BACKOFF) for i in range(retries))

    def _scrub(self, text: str) -> str:
        """`text` without the API key (or a piece of it, or any Bearer credential): ccs.redact."""
        return redact(text, [self._client.api_key or ""])

    def _who(self, role: str) -> str:
        return f"the {role} {self.model} at {self.endpoint}"

    def expect(self, labels: int = 0, judgements: int = 0) -> None:
        """Announce how many questions of each role a run will ask at most, so that the invalid-answer
        rule stops it as soon as more than ``max_invalid`` of them have failed (not only at the end)."""
        self.expected["labeler"] += int(labels)
        self.expected["judge"] += int(judgements)

    def answer_summary(self) -> str:
        """'labeler: 1 of 12 questions without a valid answer; judge: 0 of 50' for this backend."""
        return "; ".join(
            f"{role}: {self.invalid[role]} of {self.questions[role]} questions without a valid answer" for role in ROLES.values()
        )

    def _too_many(self, role: str, final: bool) -> TooManyInvalid | None:
        bad, asked = self.invalid[role], self.questions[role]
        if not final and not self.expected[role]:  # nothing announced: only the end of a run decides
            return None
        total = asked if final else max(asked, self.expected[role])
        if not bad or not total or bad <= self.max_invalid * total:
            return None
        example = f" (the last: {self._example[role]!r})" if role in self._example else ""
        of = (
            f"{bad} of {asked} questions"
            if final or total == asked
            else f"{bad} of the {total} questions of this run ({asked} asked so far)"
        )
        return TooManyInvalid(
            self._scrub(
                f"{self._who(role)}: {of} got no valid answer in {self.retries + 1} attempts{example}, more "
                f"than the {self.max_invalid:.0%} allowed (the backend's max_invalid, `ccs heads --max-invalid`). "
                "Try another model or endpoint; the valid answers are cached in "
                f"{self.cache.folder}"
            )
        )

    def check_answers(self) -> None:
        """The rule at the end of a run: raise TooManyInvalid if more than ``max_invalid`` of a role's
        questions got no valid answer; otherwise log how many did (if any)."""
        for role in ROLES.values():
            if (error := self._too_many(role, final=True)) is not None:
                raise error
        if any(self.invalid.values()):
            log.warning(
                "%s",
                self._scrub(
                    f"{self.model} at {self.endpoint}: {self.answer_summary()} "
                    f"(those heads are flagged, not scored; up to {self.max_invalid:.0%} allowed)"
                ),
            )

    def _check_cached(self, record: dict, messages: list[dict], parse: Callable[[str], object]):
        """(answer, None) if a cached record answers this question validly, else (None, why not): the
        same validation as an answer on receipt, and the record must be of this question."""
        if record.get("model") != self.model or record.get("endpoint") != self.endpoint or record.get("messages") != messages:
            return None, "the record of another question (endpoint, model or prompt differ)"
        answer = record["answer"]
        parsed = None if isinstance(answer, bool) or not isinstance(answer, (str, int)) else parse(str(answer))
        if parsed is None or parsed != answer:
            return None, f"invalid answer {_one_line(self._scrub(repr(answer)), 60)}"
        return parsed, None

    def _complete(self, convo: list[dict]) -> str:
        """One request; a failure worth retrying raises _Transient, a refused request (a wrong key,
        a bad request or model name: retrying would not help) EndpointRejected. The latter is raised
        outside the except block, so the client's error, whose text may echo the key, is neither its
        cause nor its context."""
        import openai

        try:
            reply = self._client.chat.completions.create(model=self.model, messages=convo, temperature=0)
        except openai.APITimeoutError as e:  # before APIConnectionError, its base class
            raise _Transient(f"no reply within {self.timeout:g} s") from e
        except openai.APIConnectionError as e:
            raise _Transient(f"cannot connect: {_cause(e)}") from e
        except openai.APIStatusError as e:
            if e.status_code in (408, 409, 429) or e.status_code >= 500:
                wait = _retry_after(e.response) if e.status_code in (429, 503) else None
                reason = getattr(e.response, "reason_phrase", "") or ""
                raise _Transient(f"HTTP {e.status_code} {reason}".strip(), wait) from e
            rejected = self._rejected(e)
        except (openai.APIResponseValidationError, json.JSONDecodeError) as e:  # a body that is not JSON
            raise _Transient(f"a reply that is not a chat completion: {_one_line(self._scrub(str(e)), 60)}") from e
        else:
            return _content(reply, self._scrub)
        raise rejected

    def _rejected(self, e) -> EndpointRejected:
        """A refused request (4xx but 408/409/429) as one line, with the server's message scrubbed."""
        body = getattr(e, "body", None)
        said = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else None
        said = said or getattr(e, "message", "") or str(e)
        reason = getattr(e.response, "reason_phrase", "") or ""
        advice = {
            401: " Check the key in OPENAI_API_KEY.",
            403: " Check the key's permissions.",
            404: " Check the model name and the endpoint URL (OPENAI_BASE_URL).",
        }.get(e.status_code, "")
        return EndpointRejected(
            self._scrub(
                f"the LLM endpoint {self.endpoint} (model {self.model}) refused the request: HTTP "
                f"{e.status_code} {reason}: {_one_line(self._scrub(said), 200)}.{advice}"
            )
        )

    def _ask(self, messages: list[dict], parse: Callable[[str], object], hint: str, role: str):
        self.questions[role] += 1
        key = ResponseCache.key(self.model, messages, self._endpoint_key)
        hit = self.cache.get(key, lambda record: self._check_cached(record, messages, parse))
        if hit is not None:
            return hit
        convo, attempts, failure = list(messages), self.retries + 1, None
        for attempt in range(attempts):
            if attempt:
                time.sleep(
                    failure.retry_after
                    if failure is not None and failure.retry_after is not None
                    else min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF) * (0.5 + random.random() / 2)
                )
            try:
                self.requests += 1
                content, failure = self._complete(convo), None
            except _Transient as e:
                failure = e
                wait = "" if e.retry_after is None else f", the server asks to wait {e.retry_after:g} s"
                log.warning(
                    "%s", self._scrub(f"{self.model} at {self.endpoint}: {e.what}{wait} (attempt {attempt + 1} of {attempts})")
                )
                continue
            answer = parse(content)
            if answer is not None:
                self.cache.put(key, {"endpoint": self.endpoint, "model": self.model, "messages": messages, "answer": answer})
                self.answers += 1
                return answer
            log.warning(
                "%s: invalid answer %r (attempt %d of %d)",
                self._scrub(self._who(role)),
                self._scrub(content)[:80],
                attempt + 1,
                attempts,
            )
            # show the model its answer and the rule again; the cache key stays the original prompt
            convo = [
                *messages,
                {"role": "assistant", "content": content[:200]},
                {"role": "user", "content": f"Answer with {hint} only."},
            ]
        if failure is not None:  # the last attempt could not get an answer at all
            advice = (
                " (a slow endpoint needs a longer timeout: `ccs heads --timeout`, or the notebook parameter llm_timeout)"
                if failure.what.startswith("no reply")
                else ""
            )
            raise EndpointError(
                self._scrub(
                    f"the LLM endpoint {self.endpoint} (model {self.model}) failed {attempts} attempts, the "
                    f"last with: {failure.what}{advice}. Every answer received ({self.answers} in this run) is "
                    f"cached in {self.cache.folder}, so a rerun continues where this one stopped"
                )
            ) from failure
        self.invalid[role] += 1
        self._example[role] = _one_line(self._scrub(content), 40)
        if (error := self._too_many(role, final=False)) is not None:
            raise error
        raise InvalidAnswer(
            self._scrub(f"{self._who(role)}: no valid answer after {attempts} attempts (the last: {self._example[role]!r})")
        )

    def _parse_label(self, content: str) -> str | None:
        words = content.strip().strip(".'\"`*").split()
        if len(words) != 1:
            return None
        label = normalise(words[0]) if self.vocab else (_word(words[0]) or None)
        return None if label == UNKNOWN else label  # a concept is asked for; 'unknown' is retried

    @staticmethod
    def _parse_judgement(content: str) -> int | None:
        s = content.strip().rstrip(".")
        return int(s) if s in ("0", "1") else None

    def label(self, texts: Sequence[str]) -> str:
        hint = "one word from the list" if self.vocab else "one word"
        try:
            return self._ask(label_prompt(texts, self.vocab), self._parse_label, hint, "labeler")
        except InvalidAnswer as e:  # answers came but failed validation: flag the head, don't stop the
            log.warning("%s; head labelled %s", e, UNKNOWN)  # run; nothing cached, a rerun asks again
            return UNKNOWN  # (an EndpointError is no answer at all: it stops the run)

    def judge(self, text: str, concept: str) -> int:
        if concept == UNKNOWN:
            return 0
        return self._ask(judge_prompt(text, concept), self._parse_judgement, "the digit 1 or 0", "judge")


def _check_retrying(timeout, retries, backoff) -> tuple[float, int, float]:
    """Validated timeout (seconds > 0), retries (an integer >= 0) and backoff (seconds >= 0)."""

    def number(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)

    if not (number(timeout) and timeout > 0):
        raise ValueError(f"the LLM timeout must be a number of seconds > 0, not {timeout!r}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"the LLM retries must be an integer >= 0, not {retries!r}")
    if not (number(backoff) and backoff >= 0):
        raise ValueError(f"the LLM backoff must be a number of seconds >= 0, not {backoff!r}")
    return float(timeout), int(retries), float(backoff)
