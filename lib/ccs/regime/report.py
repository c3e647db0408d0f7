"""The study's page (book/regime.md) and its figure, written from the measured runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ccs import record
from ccs.regime.heads import by_attribute, short_and_full, text_share
from ccs.regime.rule import (
    TARGETS,
    accuracy_misses,
    baseline,
    best_reached,
    fallback,
    full_run,
    is_full,
    is_short,
    next_full,
    other_seeds,
    place,
    rank,
    results,
    score,
    select,
    zoo_twins,
)
from ccs.regime.runs import study


def table(rows: list[dict]) -> pd.DataFrame:
    """One row per configuration: its lever, CCS@K by the text truth, the categories' shares,
    specialisation, label/function agreement, accuracies and cost."""
    out, order = [], {r["configuration"]: i + 1 for i, r in enumerate(rank(rows))}
    for r in rows:
        acc = pd.DataFrame(r["accuracy"]).mean(axis=1)
        out.append(
            {
                "configuration": r["configuration"],
                "lever": r["lever"],
                "pairs": r["pairs"],
                **{f"CCS {k}": r["true_ccs_counts"][str(k)] for k in range(6)},
                "CCS 5 %": 100 * r["high_share"],
                "CCS \u2264 1 %": 100 * r["low_share"],
                "specialised %": 100 * r["specialised_share"],
                "label = top attribute %": 100 * r["label_names_top"],
                "mean accuracy": r["mean_accuracy"],
                "hardest concept": f"{acc.idxmin()} {acc.min():.3f}",
                "rank": order.get(r["configuration"], ""),
                "train min": r["train_wall_s"] / 60,
                "hardware": "GPU" if "NVIDIA" in r["hardware"] else f"CPU \u00d7 {r['threads']}",
                "command": r["command"],
            }
        )
    return pd.DataFrame(out)


def figure(rows: list[dict], path: Path) -> None:
    """CCS@K (true CCS) per configuration as stacked bars, the paper's two categories marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ccs import plots

    plots.style()
    names = [r["configuration"] for r in rows]
    shares = np.array([[r["true_ccs_counts"][str(k)] / r["heads"] for k in range(6)] for r in rows])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    left = np.zeros(len(rows))
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, 6))
    for k in range(6):
        ax.barh(
            names,
            shares[:, k],
            left=left,
            color=colours[k],
            label=f"CCS {k}",
            hatch="//" if k in (0, 1) else None,
            edgecolor="white",
        )
        left += shares[:, k]
    ax.axvline(TARGETS["low_share"], color="0.2", ls=":", lw=1)
    ax.axvline(1 - TARGETS["high_share"], color="0.2", ls="--", lw=1)
    ax.invert_yaxis()
    ax.set(
        xlabel="share of the analysed heads (true CCS)",
        xlim=(0, 1),
        title="CCS@K per configuration (dotted: the CCS \u2264 1 target; dashed: the CCS 5 target)",
    )
    ax.legend(ncols=6, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def attribute_text(rows: list[dict]) -> str:
    """The page's section on which heads reach CCS 5 (by what they encode), on what full-length
    training does to a short run's heads and on how far another seed moves a short run; empty
    without any of them."""
    heads = sum(r["heads"] for r in rows)
    parts = (
        _attribute_part(by_attribute(rows), heads),
        _grey_part(rows),
        _length_part(short_and_full(rows)),
        seed_text(rows),
    )
    return "\n\n".join(p for p in parts if p)


def _grey_part(rows: list[dict]) -> str:
    """Colour heads' scene lines in the coloured worlds against the grey ones (short runs: like with like)."""
    from ccs.world.concepts import GREY_SCENES

    short = [r for r in rows if is_short(r)]

    def coloured_twin(r: dict) -> dict | None:  # the same recipe in the world whose scenes keep their colours
        world = r["world"].removesuffix("grey").rstrip("-") or "base"
        same = ("config", "single")
        return next((c for c in short if c.get("world", "base") == world and all(c.get(k) == r.get(k) for k in same)), None)

    pairs = [(c, r) for r in short if r.get("world", "base") in GREY_SCENES and (c := coloured_twin(r)) is not None]
    coloured, grey = [c for c, _ in pairs], [r for _, r in pairs]
    a, b = text_share(coloured, "colour", "scene"), text_share(grey, "colour", "scene")
    if np.isnan(a) or np.isnan(b):
        return ""
    return (
        "**Do the scenes' own colours pull colour heads to scene lines?** In the coloured worlds each scene has a "
        "colour of its own (grass green, sand yellow, snow white). In short runs that differ in that alone, the "
        "specialised colour heads "
        f"take {a:.0f} % of their texts from scene lines in the coloured worlds "
        f"({', '.join(r['configuration'] for r in coloured)}) and {b:.0f} % in the worlds whose scenes are drawn in "
        f"grey ({', '.join(r['configuration'] for r in grey)}): "
        + (
            "the scenes' colours account for most of the pull."
            if b < a / 2
            else "most of the pull remains without them, so it does not come mainly from the scenes' colours."
        )
    )


def _attribute_part(t: pd.DataFrame, analysed: int) -> str:
    """The table of `by_attribute` and what it says; `analysed`: the heads of all rows, specialised or not."""
    if t.empty:
        return ""
    lines = [
        "| top attribute | world | values | specialised heads | mean true CCS | highest | CCS 5 % "
        "| texts about it % | most other texts |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|:--|",
        *(
            f"| {r.attribute} | {r.world} | {r.values} | {r.heads} | {r.mean:.2f} | {r.highest} | {r.ccs5:.1f} "
            + ("| | |" if np.isnan(r.own) else f"| {r.own:.0f} | {f'{r.other} {r.other_share:.0f} %' if r.other else 'none'} |")
            for r in t.itertuples()
        ),
    ]
    few = t[t["values"] < 5]
    many = t[t["values"] >= 5].sort_values("ccs5", ascending=False, kind="stable")
    parts = [
        "**Which heads reach CCS 5?** The specialised heads of every row above, by the world attribute "
        "that explains most of their output."
    ]
    if len(few):
        top = int(few["highest"].max())
        parts[0] += (
            f" The {int(few['heads'].sum())} heads that encode an attribute of 2 or 3 values "
            f"({', '.join(sorted(set(few['attribute'])))}) reach true CCS {top} at most"
            + (
                ", as expected if so few values offer too few texts of their own: TextSpan's later texts then "
                "come from other concepts (few heads encode such an attribute: a small sample)."
                if top < 5
                else "."
            )
        )
        n = int(few["heads"].sum())
        parts[0] += (
            f" They are {n} of the {analysed} analysed heads ({100 * n / analysed:.1f} %): were every one of them at "
            f"CCS 5, the rows' share of CCS-5 heads would rise by {100 * n / analysed:.1f} points at most, so more "
            "values for these attributes could add many CCS-5 heads only by making many more heads encode them. "
            "That lever (a world with 8 sizes, textures and counts in 48-pixel images) is not trained here."
        )
    if len(many):
        parts[0] += (
            " Among attributes of 8 values or more, the share at CCS 5 is "
            + ", ".join(
                f"{r.ccs5:.0f} % ({r.attribute}, {r.world} world, {r.values} values, {r.heads} heads)" for r in many.itertuples()
            )
            + "."
        )
    common = t.groupby("attribute")["heads"].sum().idxmax()
    c = t[t["attribute"] == common]
    others = sorted(set(c["other"]) - {""})
    if others:
        parts[0] += (
            f" {common.capitalize()} heads, the most common ({int(c['heads'].sum())}), take {_span(c['own'])} % of their "
            f"texts from {common}, and most of the rest from {' or '.join(others)} lines ({_span(c['other_share'])} %)."
        )
    return "\n".join([*parts, "", *lines])


def _span(x: pd.Series) -> str:
    lo, hi = round(x.min()), round(x.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _length_part(pairs: list[tuple[dict, dict]]) -> str:
    if not pairs:
        return ""
    return (
        "**Short runs against full length.** "
        + "; ".join(
            f"{a['configuration']}: {100 * a['high_share']:.1f} % CCS-5 heads and {100 * a['specialised_share']:.0f} % "
            f"specialised after {a['pairs']:,} pairs, {100 * b['high_share']:.1f} % and "
            f"{100 * b['specialised_share']:.0f} % after {b['pairs']:,}"
            for a, b in pairs
        )
        + ". "
        + (
            "Every recipe trained at both lengths ends with fewer CCS-5 heads and fewer specialised heads than its "
            "short run had: the short runs rank the recipes, but what a recipe grows at full length is measured, "
            "never extrapolated from them."
            if all(b["high_share"] < a["high_share"] and b["specialised_share"] < a["specialised_share"] for a, b in pairs)
            else "The short runs rank the recipes; what a recipe grows at full length is measured."
        )
    )


def rule_text(rows: list[dict]) -> str:
    """The rule's rank of the short runs, what each full-length run it trained showed, and its choice:
    a recipe, none yet (a configuration still waits for its full-length run), or none at all."""
    order = [r["configuration"] for r in rank(rows)]
    if not order:
        return "No short run is measured yet: the rule has nothing to choose from."
    chosen, why = select(rows)
    ranked = ", ".join(f"{i + 1}. {n}" for i, n in enumerate(order))
    return (
        f"**The rule's rank** of the short runs: {ranked}. "
        + why
        + ". "
        + (
            f"The rule chooses **{chosen['configuration']}** ({chosen['lever']})."
            if chosen
            else "The rule has not chosen a recipe yet."
            if next_full(rows)
            else "Every configuration in its rank is settled and none qualifies: the rule chooses nothing. " + fallback_text(rows)
        )
    )


def fallback_text(rows: list[dict]) -> str:
    """What the fallback (regime.yaml) does once the rule has chosen nothing: the book moves to the best
    full-length model that meets the concept targets, or stays on the zoo, and the test that decided."""
    moves, best, p = fallback(rows)
    if best is None:
        return "No full-length model meets the concept targets: the book stays on the zoo."
    if p is None:
        return (
            f"The zoo's default recipe has no measured seed to test {best['configuration']} against: the book stays on the zoo."
        )
    k, n, seeds = baseline(rows)
    test = (
        f"{best['configuration']}, the best full-length model that meets the concept targets, has {best['high']} of its "
        f"{best['heads']} heads at true CCS 5 against {k} of {n} for the default recipe's "
        f"{f'{seeds} seeds' if seeds > 1 else 'seed'} (Fisher's exact test, one-sided, p = {p:.2g})"
    )
    return (
        f"By the fallback, the book moves to **{moves['configuration']}**: {test}."
        if moves
        else f"By the fallback, the book stays on the zoo: {test}."
    )


def page_text(rows: list[dict], figure_name: str = "regime/ccs-at-k.png") -> str:
    s = study()
    missing = [n for n in s["configurations"] if n not in {r["configuration"] for r in rows}]
    t = table(rows)
    cols = [
        "configuration",
        "lever",
        "pairs",
        *[f"CCS {k}" for k in range(6)],
        "CCS 5 %",
        "CCS \u2264 1 %",
        "specialised %",
        "label = top attribute %",
        "mean accuracy",
        "hardest concept",
        "rank",
        "train min",
        "hardware",
    ]
    fmt = {
        "CCS 5 %": "{:.1f}",
        "CCS \u2264 1 %": "{:.1f}",
        "specialised %": "{:.0f}",
        "label = top attribute %": "{:.0f}",
        "mean accuracy": "{:.3f}",
        "train min": "{:.0f}",
        "pairs": "{:,}",
    }
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(":--" if c in ("configuration", "lever", "hardest concept", "hardware") else "--:" for c in cols) + "|",
    ]
    for _, row in t.iterrows():
        lines.append("| " + " | ".join(fmt.get(c, "{}").format(row[c]) for c in cols) + " |")
    verdict = rule_text(rows)
    hw = sorted({r["hardware"] for r in rows})
    heads = sum(r["heads"] for r in rows)
    low = sum(r["true_ccs_counts"].get(str(k), 0) for r in rows for k in (0, 1))
    why_low = (
        (
            f"**Why CCS \u2264 1 is rare here.** A head's true CCS counts the texts of the concept that gave most "
            "of its five; it is at most 1 only when the five texts come from five different concepts (the world "
            "has seven attributes, the pool's distractors a few categories more) or carry none. Across the "
            f"{heads} heads of the rows above, {low} do. The paper's judge counts the texts that fit a label an LLM "
            "gave, and a head whose texts share no concept gets a label that fits one or none of them; the "
            "ground truth has no such vague label to fall back on, so the low category needs heads whose "
            "texts scatter over the whole pool."
        )
        if heads
        else ""
    )
    attribute_section, reached = attribute_text(rows), reached_text(rows)
    return "\n".join(
        [
            "# Appendix: which models grow the paper's categories?",
            "",
            "<!-- Written by `ccs regime page` (ccs.regime) from book/regime/*.json; do not edit. -->",
            "",
            "The paper prunes **every** head with CCS 5 against **every** head with CCS \u2264 1 (ViT-B-32-OpenAI: 8 and "
            "4 of its 48 analysed heads). The concept-world models of this book grow one CCS-5 head each and at most "
            "one CCS \u2264 1 head, so their pages cannot form the paper's test and compare ranked sets instead. This "
            "study asks which training recipe grows heads in both categories. Each configuration changes one lever of "
            "the zoo's recipe (or two), is trained from the same seed for the same short budget, and is described by "
            "the concept world's ground truths: the **true CCS** of each analysed head (how many of its five TextSpan "
            "texts come from one concept), its **specialisation** (the share of what all world attributes explain of "
            "its output that its top attribute explains; *specialised* at 0.6 or more), how often **the label names "
            "that top attribute**, and the **concept accuracies** (zero-shot, two fresh evaluation seeds of 1,000 "
            "images). The zoo's shipped models are the reference rows, at their full training length; the recipe "
            "first in the rule's rank is trained at that length too (its row `NAME-full`), because a short run only "
            "ranks: the zoo's rows show how much a model's heads and accuracies still change after 1,500 steps.",
            "",
            *([summary_text(rows), ""] if rank(rows) else []),
            "**The selection rule**, written before any pruning page ran on a model of the study:",
            "",
            f"> {s['selection']}",
            "",
            *([twins_text(rows), ""] if zoo_twins(rows) else []),
            "**If the rule chooses nothing**, written after the full-length runs of eight configurations were "
            "measured and before those of heads12 and captions were (heads12's was under way, a tenth trained):",
            "",
            f"> {s['fallback']}",
            "",
            "Its second version ranked by the CCS-5 share only while no short run had a CCS \u2264 1 head. The first "
            "short run with such heads (grey, measured after the full-length runs of rich and rich-deep below) "
            "made every other run score 0 and tie, so they were ranked by size alone, base (no CCS-5 head) second. "
            "The third version, above, "
            "breaks the score's ties by the CCS-5 share instead, which keeps the second's order wherever that "
            "applied; it was written after the grey runs were measured, before any pruning page ran on a model of "
            "the study:",
            "",
            f"> {s['second_rule']}",
            "",
            "Its first version chose nothing, since no short run reached the accuracy it asked of them (1,500 steps "
            "are far from converged: compare the zoo's rows), and was replaced before any model of the study was "
            "trained at full length:",
            "",
            f"> {s['first_rule']}",
            "",
            f"```{{figure}} {figure_name}",
            ":name: fig-regime-ccs-at-k",
            ":alt: Stacked horizontal bars of the share of heads at each true CCS from 0 to 5, one bar per configuration.",
            "",
            "The true CCS of the analysed heads per configuration (CCS@K, hatched: the paper's low category).",
            "```",
            "",
            *lines,
            "",
            verdict,
            "",
            *([reached, ""] if reached else []),
            *([why_low, ""] if why_low else []),
            *([attribute_section, ""] if attribute_section else []),
            *([f"Not measured yet: {', '.join(missing)} (each is `ccs regime run NAME`, resumable)."] if missing else []),
            "",
            f"Budget of a short run: {s['pairs']:,} image-caption pairs; the zoo's models saw 3,000,000. Hardware: "
            f"{'; '.join(hw)}. *train min* is wall time, including any time a run was paused while other work had "
            "the machine, so it ranks nothing. Every row is reproduced by its command: `ccs regime run NAME` for a "
            "short run of `lib/ccs/data/regime.yaml`, `ccs regime run NAME --full` at full length, `make train-tiny "
            "MODEL=NAME` for a zoo model, then `ccs regime measure NAME`; `ccs regime walk` trains the full-length "
            "runs the rule still waits for, in its order.",
            "",
        ]
    )


def page(out: Path = Path("book") / "regime.md") -> Path:
    """Write the study's page and its figure from the measured configurations."""
    rows = results(out.parent / "regime")
    figure(rows, out.parent / "regime" / "ccs-at-k.png")
    out.write_text(page_text(rows))
    return out


def summary_text(rows: list[dict]) -> str:
    """The page in a few sentences: how many configurations the rule has settled, what it chose or
    waits for, the best full-length model that meets the concept targets, and, once the rule has chosen
    nothing, what the fallback decides."""
    order = rank(rows)
    settled = [r for r in order if full_run(rows, r) is not None]
    chosen, _ = select(rows)
    waiting = next_full(rows)
    meets, _ = best_reached(rows)
    step = (
        f"it chose **{chosen['configuration']}**"
        if chosen
        else f"none qualifies so far, and **{waiting['configuration']}** is the next to train at full length"
        if waiting
        else "none qualifies: the rule chooses nothing"
    )
    best = (
        f" The best full-length model that meets the concept targets has {meets['high']} of its {meets['heads']} "
        f"heads at true CCS 5 ({meets['configuration']}, {100 * meets['high_share']:.1f} % against the paper's "
        f"{100 * TARGETS['high_share']:.0f} %) and {meets['low']} at CCS \u2264 1 ({100 * meets['low_share']:.1f} % against "
        f"{100 * TARGETS['low_share']:.0f} %)."
        if meets
        else ""
    )
    moves, tested, _ = fallback(rows)
    why = f" ({tested['configuration']} is not told apart from the default recipe)" if tested else ""
    decided = (
        ""
        if chosen or waiting or not order
        else f" By the fallback, the book moves to **{moves['configuration']}**."
        if moves
        else f" By the fallback, the book stays on the zoo{why}."
    )
    return (
        f"**In short.** The rule has settled {len(settled)} of the {len(order)} configurations in its rank by a "
        f"model trained at full length; {step}.{best}{decided}"
    )


def twins_text(rows: list[dict]) -> str:
    """Which configurations are a zoo model's recipe, so that the rule reads that model as their
    full-length run."""
    twins = " and ".join(f"{r['configuration']} is {f['configuration'][4:]}" for r, f in zoo_twins(rows))
    return (
        "A configuration whose recipe is a zoo model's (the same config, world, caption share and training seed) "
        f"needs no full-length run of its own: the zoo's model is that recipe trained at full length by "
        f"`make train-tiny`, and the rule reads it as one ({twins}; the model cards say how each was trained). "
        "This reading was added after the full-length runs of grey, rich and rich-deep had been measured and "
        "before any other; it only settles configurations that the zoo had already trained."
    )


def reached_text(rows: list[dict]) -> str:
    """How far the full-length models got towards the paper's categories, with and without the concept
    targets; empty without a full-length model."""
    meets, better = best_reached(rows)
    if meets is None and better is None:
        return ""
    full = [r for r in rows if is_full(r)]
    high = [r["configuration"] for r in full if r["high_share"] >= TARGETS["high_share"]]
    low = [r["configuration"] for r in full if r["low_share"] >= TARGETS["low_share"]]

    def described(r: dict) -> str:
        return (
            f"**{r['configuration']}**, with {100 * r['high_share']:.1f} % of its heads at true CCS 5 and "
            f"{100 * r['low_share']:.1f} % at CCS \u2264 1 ({r['high']} and {r['low']} of {r['heads']}; "
            f"{100 * min(score(r), 1):.0f} % of the way to the target for the scarcer category)"
        )

    n_meet = sum(not accuracy_misses(r) for r in full)
    text = (
        f"**How far the study got.** The targets are {100 * TARGETS['high_share']:.0f} % of the analysed heads at "
        f"CCS 5 and {100 * TARGETS['low_share']:.0f} % at CCS \u2264 1. Of the {len(full)} models trained at full "
        f"length, {n_meet} {'meets' if n_meet == 1 else 'meet'} the concept targets"
        + (f"; the best of them by the rule's score is {described(meets)}" if meets else "")
        + (f"; of those that miss them, one ranks higher by the same measure: {described(better)}" if better else "")
        + ". "
    )
    reach = [f"the {what} target is reached by {', '.join(by)}" for what, by in (("CCS-5", high), ("CCS \u2264 1", low)) if by]
    text += (
        ("At full length, " + " and ".join(reach) + ".") if reach else "No model trained at full length reaches either target."
    )
    return text + chance_text([r for r in full if not accuracy_misses(r)], meets)


def chance_text(models: list[dict], best: dict | None) -> str:
    """Whether the CCS-5 shares of the full-length `models` (those meeting the concept targets) tell
    them apart, given how few heads each share counts (Wilson 95 % intervals); empty for fewer than two."""
    if best is None or len(models) < 2:
        return ""
    ci = {r["configuration"]: record.share(r["high"], r["heads"]) for r in models}
    common = max(lo for _, lo, _ in ci.values()), min(hi for _, _, hi in ci.values())
    _, lo, hi = ci[best["configuration"]]
    holds = f", which holds the {100 * TARGETS['high_share']:.0f} % target too" if lo <= TARGETS["high_share"] <= hi else ""
    return (
        f" Each share counts few heads: {best['configuration']}'s {best['high']} of {best['heads']} at CCS 5 has "
        f"the 95 % Wilson interval {100 * lo:.1f}-{100 * hi:.1f} %{holds}. "
        + (
            f"The intervals of all {len(models)} full-length models that meet the concept targets share the range "
            f"{100 * common[0]:.1f}-{100 * common[1]:.1f} %, so their CCS-5 shares do not tell these recipes apart."
            if common[0] <= common[1]
            else f"The intervals of the {len(models)} full-length models that meet the concept targets do not all "
            "overlap: their CCS-5 shares tell some of these recipes apart."
        )
    )


def seed_text(rows: list[dict]) -> str:
    """How far a short run from another training seed moves its configuration's numbers and place in
    the rule's rank; empty without such a run."""
    pairs = other_seeds(rows)
    if not pairs:
        return ""

    def shares(r: dict) -> str:
        return f"{100 * r['high_share']:.1f} % CCS 5 and {100 * r['low_share']:.1f} % CCS \u2264 1 (score {score(r):.2f})"

    moved = [(a, b, place(rows, a), place(rows, a, b)) for a, b in pairs]
    return (
        "**Does a short run's place hold on another seed?** The rank rests on one training seed per "
        "configuration. "
        + "; ".join(
            f"{b['configuration']} (seed {b['seed']}): {shares(b)}, against {shares(a)} from seed "
            f"{a.get('seed', study()['seed'])}; in its place, {a['configuration']} would rank {new}"
            + (" as it does" if new == old else f" instead of {old}")
            for a, b, old, new in moved
        )
        + ". "
        + (
            "Another seed moves "
            + ", ".join(a["configuration"] for a, _, old, new in moved if new != old)
            + " in the rank: one seed per configuration does not settle the short runs' order, which sets the "
            "order in which the rule trains recipes at full length, and so which of two that would both qualify "
            "it chooses."
            if any(new != old for *_, old, new in moved)
            else "Another seed leaves these configurations where they were in the rank."
        )
    )
