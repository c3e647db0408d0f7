"""Keep secrets out of every message: the API key of an LLM endpoint must never be printed, logged or
stored, also when a server echoes it back (a 401 "Incorrect API key provided: Bearer sk-...", a
proxy's error page that shows the request's headers).

`redact` is applied to every text that can carry server text: the openai backend's errors and
warnings, and the one-line `error:` (and the --debug traceback) of every `ccs` command, so a key
echoed inside a notebook run's traceback is scrubbed too. Light on purpose (no third-party import):
the CLI imports it at start-up.
"""

from __future__ import annotations

import os
import re

MASK = "***"
KEY_VARIABLES = ("OPENAI_API_KEY",)  # environment variables that hold secrets
MIN_PIECE = 8  # a piece of a key this long (a server echoing a truncated key) is masked too

# "Bearer <token>" / "Basic <token>" (an echoed Authorization header), and OpenAI-style secret keys
# (sk-..., sk-proj-...) wherever they stand, known or not
_SCHEMES = re.compile(r"\b(Bearer|Basic|Token)(\s+|%20|\+)(?!\*\*\*)[^\s'\",;}\]\\<>]+", re.IGNORECASE)
_SK = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_TOKENS = re.compile(r"[A-Za-z0-9_\-.~+/=]{%d,}" % MIN_PIECE)


def known_keys(extra=()) -> list[str]:
    """The secrets to mask: `extra` and the values of KEY_VARIABLES, longest first."""
    keys = {k for k in (*extra, *(os.environ.get(v) for v in KEY_VARIABLES)) if k and k.strip()}
    return sorted(keys, key=len, reverse=True)


def redact(text: str, keys=()) -> str:
    """`text` with every known key (`keys` and OPENAI_API_KEY's value), every piece of one at least
    MIN_PIECE characters long, every ``Bearer``/``Basic`` credential and every ``sk-...`` key replaced
    by ``***``."""
    text = str(text)
    secrets = known_keys(keys)
    for key in secrets:  # a short placeholder key ('EMPTY', 'x') only as a word of its own
        text = (
            text.replace(key, MASK)
            if len(key) >= MIN_PIECE
            else re.sub(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", MASK, text)
        )
    text = _SCHEMES.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _SK.sub("sk-" + MASK, text)
    if secrets:  # a truncated or partly masked echo of a key ("sk-test-SECRET-do-no...")
        text = _TOKENS.sub(lambda m: MASK if any(_piece(m[0], k) for k in secrets) else m[0], text)
    return text


def _piece(token: str, key: str) -> bool:
    """Whether `token` is a piece of `key` of at least MIN_PIECE characters (after trimming the
    punctuation that may close it, e.g. 'sk-abc...')."""
    token = token.strip(".~+/=-_")
    return len(token) >= MIN_PIECE and token in key
