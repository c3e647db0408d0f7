"""Which ready page Snakemake starts first when a core frees (the notebook rule's `priority`).

A model's stale pages run one after the other (the Snakefile's `BEFORE` chain: they share the model's
conditions through the cache), the chains of different models side by side. Started in no particular
order, one chain can be left to run alone at the end while the other cores wait: in the tenth
session's empty-cache run, ccs-tiny-h4's last six pages ran after the other models had advanced, its
seeds page alone on the machine for its last 80 s. Longest remaining work first (the critical path) lets
the chains end together: a page's priority is the work left in its model's chain from it on."""

from __future__ import annotations

from collections.abc import Mapping

# A page's seconds at one thread on 2 cores (ccs-tiny from an empty cache, benchmarks/README.md): only
# their proportions matter. An experiment not listed counts as `OTHER`.
SECONDS = {"model_card": 19, "textspan": 9, "ccs": 22, "pruning": 69, "concepts": 62, "ood": 62, "video": 65, "seeds": 139}
OTHER = 60


def work_left(stale: Mapping[tuple[str, str], bool]) -> dict[tuple[str, str], int]:
    """For each (model, experiment) in book order, whether its page is stale -> the seconds of stale
    pages of that model from it on (its own included): its priority. A current page adds nothing."""
    left, total = {}, {}
    for (model, experiment), is_stale in reversed(list(stale.items())):
        total[model] = total.get(model, 0) + (SECONDS.get(experiment, OTHER) if is_stale else 0)
        left[model, experiment] = total[model]
    return left
