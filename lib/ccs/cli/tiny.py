"""`ccs train-tiny` and `ccs eval-tiny`: train the embedded tiny CLIP on the concept world, and
evaluate the shipped weights on freshly generated images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from ccs.cli import app, bad, constant, dataclass_defaults, run_lock

# The CLI's defaults are the training recipe's (read from ccs/train.py without importing torch).
_RECIPE = dataclass_defaults("ccs.train", "TrainConfig")


@app.command("train-tiny")
def train_tiny(
    model: str = typer.Option(
        constant("ccs.models", "TINY"),
        help="Which concept-world model to train (`ccs models`; the zoo in lib/ccs/data/zoo.yaml gives its config and seed).",
    ),
    out: Path = typer.Option(None, help="Run folder (checkpoints, config, log); default train-runs/MODEL."),
    pairs: int = typer.Option(_RECIPE["pairs"], min=1, help="Image-caption pairs to train on."),
    batch_size: int = typer.Option(_RECIPE["batch_size"], min=2, help="Pairs per step (a contrastive loss needs at least 2)."),
    lr: float = typer.Option(_RECIPE["lr"], help="Peak learning rate (> 0)."),
    seed: int = typer.Option(
        None, min=0, help="Training seed (initial weights and images); default: the model's seed in the zoo."
    ),
    threads: int = typer.Option(1, min=1, help="torch CPU threads (1 when other work shares the cores)."),
    eval_every: int = typer.Option(_RECIPE["eval_every"], min=1, help="Steps between per-concept zero-shot evaluations."),
    max_steps: int = typer.Option(None, min=0, help="Stop after this many more steps (resume later)."),
    sibling_weights: str = typer.Option(
        "",
        help="Which attribute the sibling groups differ in, e.g. "
        "'shape=0.6,texture=0.3,position=0.1' (default: the mix the "
        "shipped run ended with, train.SIBLING_MIX).",
    ),
    sibling_frac: float = typer.Option(
        _RECIPE["sibling_frac"],
        min=0.0,
        max=1.0,
        help="Share of each batch in groups of images that differ in one attribute only.",
    ),
    sibling_group: int = typer.Option(_RECIPE["sibling_group"], min=2, help="Images per such group (2: pairs)."),
    precision: str = typer.Option(
        _RECIPE["precision"], help="Autocast precision: auto (bf16 where the CPU or GPU has it natively), bf16 or fp32."
    ),
    loader_workers: int = typer.Option(
        _RECIPE["loader_workers"],
        min=0,
        help="Worker processes that "
        "render batches (on a GPU, enough to keep it busy: rendering "
        "a batch takes ~0.1 s of one core); 0: inline (faster on 2 "
        "CPU cores).",
    ),
    export: bool = typer.Option(
        False, "--export", help="Only export the run's best weights and record into the package (lib/ccs/weights), then exit."
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="Ignore the run's config.json and use these options (a new run folder needs no flag)."
    ),
) -> None:
    """Train (or resume) a concept-world CLIP; re-running the same command resumes from the last
    checkpoint."""
    from ccs import models, train

    zoo = models.zoo()
    if model not in zoo:
        raise bad("--model", f"{model!r} is not a concept-world model; trainable: {', '.join(zoo)}.")
    out = out or Path("train-runs") / model
    seed = zoo[model]["seed"] if seed is None else seed
    if export:
        missing = [f for f in ("last.pt", "best.pt") if not (out / f).is_file()]
        if missing:
            raise bad(
                "--out",
                f"{out} has no {' or '.join(missing)}: --export needs a run folder "
                "that `ccs train-tiny --out FOLDER` has trained (and evaluated) in.",
            )
        typer.echo(f"exported {train.export(out)}")
        return
    if out.exists() and not out.is_dir():
        raise bad("--out", f"{out} is a file, not a run folder.")
    if precision not in train.PRECISIONS:
        raise bad("--precision", f"{precision!r}: use {', '.join(train.PRECISIONS)}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise bad("--lr", f"the learning rate must be a positive number, not {lr}.")
    weights = parse_sibling_weights(sibling_weights) or train.TrainConfig().sibling_weights
    cfg = (
        None
        if (out / "config.json").exists() and not fresh
        else train.TrainConfig(
            pairs=pairs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            threads=threads,
            eval_every=eval_every,
            sibling_frac=sibling_frac,
            sibling_group=sibling_group,
            sibling_weights=weights,
            precision=precision,
            loader_workers=loader_workers,
            model=model,
            world=zoo[model].get("world", "base"),  # the variant the model is registered (and analysed) in
        )
    )
    with run_lock(out):
        state = train.train(out, cfg, max_steps=max_steps)
    typer.echo(f"step {state.step}, best mean zero-shot accuracy {state.best:.3f} at step {state.best_step}")


def parse_sibling_weights(text: str, param: str = "--sibling-weights") -> dict[str, float]:
    """'shape=0.6,texture=0.3' -> {"shape": 0.6, "texture": 0.3} ({} for ''); every key a world
    concept, every weight a number >= 0, some weight > 0 (a usage error otherwise)."""
    from ccs import world

    out: dict[str, float] = {}
    for item in (kv.strip() for kv in text.split(",")):
        if not item:
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep:
            raise bad(
                param,
                f"expected CONCEPT=WEIGHT pairs separated by commas, e.g. 'shape=0.6,texture=0.3,position=0.1'; got {item!r}.",
            )
        if key not in world.CONCEPTS:
            raise bad(param, f"{key!r} is not a concept of the world; known: {', '.join(world.CONCEPTS)}.")
        if key in out:
            raise bad(param, f"{key!r} is given twice.")
        try:
            w = float(value)
        except ValueError:
            w = float("nan")
        if not (math.isfinite(w) and w >= 0):
            raise bad(param, f"the weight of {key!r} must be a number >= 0, not {value!r}.")
        out[key] = w
    if out and not sum(out.values()) > 0:
        raise bad(param, "at least one weight must be > 0.")
    return out


def _clean(x):
    """Round floats to 4 places; NaN (an undefined accuracy) becomes null, so the JSON is valid."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return None if x != x else round(x, 4) if isinstance(x, float) else x


@app.command("eval-tiny")
def eval_tiny(
    seed: int = typer.Option(1, min=0, help="Seed of the fresh test images (never used in training)."),
    n: int = typer.Option(1000, min=2, help="Number of test images (and of captions for retrieval)."),
    splits: str = typer.Option(
        "test", help="Comma-separated world splits to evaluate, or 'all' (every split but train; see `ccs world splits`)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    model: str = typer.Option("ccs-tiny", help="Registered model name."),
) -> None:
    """Zero-shot accuracy per concept and image<->text retrieval of the shipped tiny model."""
    from ccs import evaluate, models, world

    models.spec(model)  # an unknown name fails here, listing the known ones
    names = list(world.SPLITS)[1:] if splits == "all" else [s.strip() for s in splits.split(",")]
    unknown = [s for s in names if s not in world.SPLITS]
    if unknown or len(set(names)) != len(names):
        raise bad("--splits", f"{splits!r}: give distinct splits of {', '.join(world.SPLITS)} separated by commas, or 'all'.")
    m, _, tok = models.load(model)
    report = evaluate.world_report(m, tok, seed=seed, n=n, splits=names)
    report = _clean(report)
    out = report[names[0]] if len(names) == 1 else report
    if as_json:
        typer.echo(json.dumps(out))
        return
    for split, r in report.items():
        typer.echo(f"[{split}] " + "  ".join(f"{k} {v if v is None else f'{v:.3f}'}" for k, v in r["zero_shot"].items()))
        typer.echo(f"[{split}] " + "  ".join(f"{k} {v:.3f}" for k, v in r["retrieval"].items()))
        if "ood_auroc" in r:
            typer.echo(f"[{split}] OOD AUROC (shape prompts' MCM score vs test) {r['ood_auroc']:.3f}")
