"""`ccs train-tiny` and `ccs eval-tiny`: train the embedded tiny CLIP on the concept world, and
evaluate the shipped weights on freshly generated images."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from ccs import train
from ccs.cli import app

_RECIPE = train.TrainConfig()  # the CLI's defaults are the training recipe's


@app.command("train-tiny")
def train_tiny(
    out: Path = typer.Option(Path("train-runs/ccs-tiny"), help="Run folder (checkpoints, config, log)."),
    pairs: int = typer.Option(_RECIPE.pairs, help="Image-caption pairs to train on."),
    batch_size: int = typer.Option(_RECIPE.batch_size),
    lr: float = typer.Option(_RECIPE.lr),
    seed: int = typer.Option(_RECIPE.seed),
    threads: int = typer.Option(1, help="torch CPU threads (1 when other work shares the cores)."),
    eval_every: int = typer.Option(_RECIPE.eval_every, help="Steps between per-concept zero-shot evaluations."),
    max_steps: int = typer.Option(None, help="Stop after this many more steps (resume later)."),
    sibling_weights: str = typer.Option("", help="Which attribute the sibling groups differ in, e.g. "
                                        "'shape=0.6,texture=0.3,position=0.1' (default: the mix the "
                                        "shipped run ended with, train.SIBLING_MIX)."),
    sibling_frac: float = typer.Option(_RECIPE.sibling_frac, help="Share of each batch in groups of images that differ "
                                       "in one attribute only."),
    sibling_group: int = typer.Option(_RECIPE.sibling_group, help="Images per such group (2: pairs)."),
    export: bool = typer.Option(False, "--export", help="Only export the run's best weights and record "
                                "into the package (lib/ccs/weights), then exit."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore the run's config.json and use these options "
                               "(a new run folder needs no flag)."),
) -> None:
    """Train (or resume) the tiny CLIP; re-running the same command resumes from the last checkpoint."""
    if export:
        typer.echo(f"exported {train.export(out)}")
        return
    cfg = None if (out / "config.json").exists() and not fresh else train.TrainConfig(
        pairs=pairs, batch_size=batch_size, lr=lr, seed=seed, threads=threads, eval_every=eval_every,
        sibling_frac=sibling_frac, sibling_group=sibling_group,
        sibling_weights={k: float(v) for k, v in (kv.split("=") for kv in sibling_weights.split(",") if kv)}
        or _RECIPE.sibling_weights)
    state = train.train(out, cfg, max_steps=max_steps)
    typer.echo(f"step {state.step}, best mean zero-shot accuracy {state.best:.3f} at step {state.best_step}")


def _clean(x):
    """Round floats to 4 places; NaN (an undefined accuracy) becomes null, so the JSON is valid."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return None if x != x else round(x, 4) if isinstance(x, float) else x


@app.command("eval-tiny")
def eval_tiny(
    seed: int = typer.Option(1, help="Seed of the fresh test images (never used in training)."),
    n: int = typer.Option(1000, help="Number of test images (and of captions for retrieval)."),
    splits: str = typer.Option("test", help="Comma-separated world splits to evaluate, or 'all'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    model: str = typer.Option("ccs-tiny", help="Registered model name."),
) -> None:
    """Zero-shot accuracy per concept and image<->text retrieval of the shipped tiny model."""
    from ccs import evaluate, models, world

    m, _, tok = models.load(model)
    names = list(world.SPLITS)[1:] if splits == "all" else splits.split(",")
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
