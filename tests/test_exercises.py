"""The exercises' answer keys are the numbers of the pages they cite, signs included."""
import json
import re
from pathlib import Path

import pytest

from test_prose_verdicts import GLUE, _glued

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = (ROOT / "book" / "exercises.md").read_text()


def _number(text: str) -> float:
    return float(re.match(r"\s*([\u2212+-]?\d+(?:\.\d+)?)", text)[1].replace("\u2212", "-"))


def test_every_glued_value_an_answer_key_cites_exists():
    missing = [m[0] for m in GLUE.finditer(EXERCISES) if m["key"] not in _glued(m["model"], m["page"])]
    assert not missing, missing


def test_the_colour_answer_key_has_the_concepts_page_s_numbers_and_sign_convention():
    """Exercise 4: the change under the colour heads on the colour and shape tasks, and the excess
    over random heads, which the key says is the change under the colour heads minus the change
    under random heads (negative: the colour heads cost more)."""
    assert "(the change under the colour heads minus the change under\nrandom heads; negative:" in EXERCISES
    glued = _glued("ccs-tiny", "concepts")
    page = json.loads((ROOT / "book" / "runs" / "ccs-tiny" / "concepts.json").read_text())
    change, control, excess = page["change"]["colour"], page["control"]["colour"], page["excess"]["colour"]
    assert _number(glued["concepts-colour-on-colour"]) == pytest.approx(change["colour"], abs=0.051)
    assert _number(glued["concepts-colour-on-shape"]) == pytest.approx(change["shape"], abs=0.051)
    assert _number(glued["concepts-colour-excess"]) == pytest.approx(excess["colour"], abs=0.051)
    assert excess["colour"] == pytest.approx(change["colour"] - control["colour"], abs=0.002)  # the stated convention
