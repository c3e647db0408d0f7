"""Notebook parameters: each is declared once, on its line of the notebook's parameters cell, and
every value is held to its declaration before a kernel starts.

A parameter's line gives its name, its default (whose type is the parameter's type) and, opening the
trailing comment, its range in brackets, e.g.

    clips = 500  # [at least 3] concept-world clips (the page shows three)
    backend = "embedding"  # [embedding | openai] labeler and judge
    last_layers = 4  # [1 .. layers] analyse the heads of the last LAYERS layers
    splits = ["test", "sketch"]  # [list of split] world splits to evaluate

A range is one or more clauses separated by commas, each one of: a bound (`at least N`, `more than
N`, `at most N`, `less than N`, `N .. M`; N may be `layers`, the model's layer count), choices
(`a | b | c`), a kind (`model`, `pool`, `concept`, `split`, `text`: see KINDS), or `list of` one of
these (a non-empty list of distinct items). `check_parameters` holds every value to it before a
kernel starts. (Words, not `>=`: papermill skips a parameter line with a second `=`.)
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path


class ParameterError(ValueError):
    """A notebook parameter that does not exist, has the wrong type, or is out of range."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name  # the parameter at fault, when there is one


@dataclass(frozen=True)
class Declaration:
    name: str
    default: object
    range: str  # the bracketed range of the parameter's line ('' when it has none)

    @property
    def type(self) -> type:
        return float if isinstance(self.default, float) else type(self.default)


def _is_text(v) -> bool:
    return isinstance(v, str) and v.strip() != ""


def _is_model(v) -> bool:
    from ccs import models

    return isinstance(v, str) and v in models.names()


def _is_pool(v) -> bool:
    """A pool spec that loads: the world pool's forms are checked by their syntax (generating them
    takes seconds), a file or a downloaded URL by reading it."""
    import re

    if not _is_text(v):
        return False
    if v.startswith("world"):
        return bool(re.fullmatch(r"world|world\+[1-9][0-9]{0,3}|world:[1-9][0-9]*", v))
    from ccs import pools

    pools.load(v, download=False)  # not here: its error says how to get it
    return True


def _world(attr: str):
    from ccs import world

    return getattr(world, attr)


# kind -> (test, what it means in a message)
KINDS = {
    "text": (_is_text, "a non-empty string"),
    "model": (_is_model, "a registered model (`ccs models`)"),
    "pool": (
        _is_pool,
        "a pool that is here: 'world', 'world+N' (N <= 9999), 'world:N', 'textspan' or a URL "
        "once fetched (`ccs pool fetch`), or a pool file",
    ),
    "concept": (lambda v: v in _world("CONCEPTS"), "a concept of the world"),
    "split": (lambda v: v in _world("SPLITS"), "a split of the world"),
}


def _bound(text: str, context: dict) -> float:
    text = text.strip()
    if text == "layers":
        from ccs import models

        return models.spec(context["model"]).layers
    return float(text)


def _clause(clause: str, context: dict):
    """(test, description) of one clause of a range."""
    import operator
    import re

    clause = clause.strip()
    if clause.startswith("list of "):
        test, what = _clause(clause[len("list of ") :], context)
        return (
            (lambda v: isinstance(v, list) and len(v) > 0 and len(set(map(repr, v))) == len(v) and all(test(x) for x in v)),
            f"a non-empty list of distinct items, each {what}",
        )
    if clause in KINDS:
        test, what = KINDS[clause]
        if clause in ("concept", "split"):
            what = f"{what}: {', '.join(_world(clause.upper() + 'S'))}"
        return test, what
    m = re.fullmatch(r"(\S+)\s*\.\.\s*(\S+)", clause)
    if m:
        lo, hi = _bound(m[1], context), _bound(m[2], context)
        return (lambda v: lo <= v <= hi), f"in {m[1]}..{m[2]}" + (f" (= {hi:g})" if m[2] == "layers" else "")
    m = re.fullmatch(r"(at least|more than|at most|less than)\s+(\S+)", clause)
    if m:
        op = {"at least": operator.ge, "more than": operator.gt, "at most": operator.le, "less than": operator.lt}[m[1]]
        bound = _bound(m[2], context)
        return (lambda v: op(v, bound)), f"{m[1]} {m[2]}"
    choices = [c.strip().strip("'\"") for c in clause.split("|")]
    if len(choices) > 1 or re.fullmatch(r"[\w.-]+", clause):
        return (lambda v: v in choices), " or ".join(", ".join(map(repr, choices)).rsplit(", ", 1))
    raise ParameterError(f"cannot read the range [{clause}]")


def declarations(source: Path) -> dict[str, Declaration]:
    """The parameters a notebook declares, read from its parameters cell (the cell tagged
    ``parameters``) without running it: {name: Declaration}."""
    import io
    import tokenize

    import jupytext

    cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{source.name} needs exactly one cell tagged 'parameters'")
    text = cells[0].source
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(text).readline)
        if tok.type == tokenize.COMMENT
    }
    out = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            spec = ""
            for line in range(node.lineno, node.end_lineno + 1):
                comment = comments.get(line, "")
                if comment.startswith("[") and "]" in comment:
                    spec = comment[1 : comment.index("]")].strip()
                    break
            out[name] = Declaration(name, ast.literal_eval(node.value), spec)
    return out


def notebook_parameters(source: Path) -> dict:
    """The parameters a notebook declares: {name: default}."""
    return {name: d.default for name, d in declarations(source).items()}


def check_parameters(source: Path, parameters: dict) -> None:
    """Raise a ParameterError unless every parameter is declared by the notebook, has the type of its
    default (an int where a float is expected is fine) and lies in its declared range."""
    declared = declarations(source)
    context = {"model": parameters.get("model", declared.get("model", Declaration("model", "", "")).default)}
    if "model" in declared:  # first: the other ranges may depend on the model
        parameters = {"model": context["model"], **parameters}
    for name, value in parameters.items():
        if name not in declared:
            raise ParameterError(f"{source.stem} has no parameter {name!r}; its parameters: {', '.join(declared)}", name)
        d = declared[name]
        expected = d.type
        ok = isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ParameterError(
                f"{source.stem}: {name} must be {'an' if expected.__name__[0] in 'aeiou' else 'a'} "
                f"{expected.__name__} (like its default {d.default!r}), not {value!r}",
                name,
            )
        if expected is float and not math.isfinite(value):  # .inf passes "more than 0", then hangs or fails later
            raise ParameterError(f"{source.stem}: {name} must be a finite number, not {value!r}", name)
        for clause in filter(None, (c.strip() for c in d.range.split(","))):
            test, what = _clause(clause, context)
            try:
                ok = test(value)
            except (OSError, ValueError, KeyError) as e:  # the library's own reason (a pool not fetched)
                raise ParameterError(f"{source.stem}: {name} = {value!r}: {' '.join(str(e).split())}", name) from None
            if not ok:
                raise ParameterError(f"{source.stem}: {name} must be {what}, not {value!r}", name)
