"""The grid: `pipeline.yaml`, the only list of models and experiments, read into the runs
(model, experiment, parameters) of the book, in book order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ccs.pipeline import paths


@dataclass(frozen=True)
class Run:
    model: str
    experiment: str
    parameters: dict = field(default_factory=dict)

    @property
    def source(self) -> Path:
        return paths.source(self.experiment)

    @property
    def notebook(self) -> Path:
        return paths.page(self.model, self.experiment)


def grid(path: Path | None = None) -> dict:
    return yaml.safe_load((path or paths.GRID).read_text())


def runs(path: Path | None = None) -> list[Run]:
    """Every (model, experiment) notebook the book contains, in book order."""
    g = grid(path)
    return [
        Run(model, exp, dict((cfg or {}).get("parameters") or {}))
        for model in g["models"]
        for exp, cfg in g["experiments"].items()
        if model in (cfg or {}).get("models", g["models"])
    ]


def find(model: str, experiment: str, path: Path | None = None) -> Run:
    for run in runs(path):
        if (run.model, run.experiment) == (model, experiment):
            return run
    raise KeyError(f"({model}, {experiment}) is not in {(path or paths.GRID).name}; add it there first.")
