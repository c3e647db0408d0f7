"""Which model's pages Snakemake starts first when a core frees (the pages rule's `priority`).

A model's stale pages run one after the other in one job (one kernel: they share its imports, and the
model's conditions through the cache), the jobs of different models side by side. Started in no
particular order, a long job can be left to run alone at the end while the other cores wait: in the
tenth session's empty-cache run, ccs-tiny-h4's last six pages ran after the other models had finished,
its seeds page alone on the machine for its last 80 s. Longest job first (the critical path) lets the
jobs end together: a model's priority is the stale work of its pages. That work grows with the heads
a model's pages analyse (TextSpan runs per head, and the pruning pages prune sets of them): in the
twelfth session's empty-cache run ccs-tiny-h4 (16 analysed heads) took 3.4 min, the three models of 32
heads 3.7-4.4 min. Only the order matters: with three long jobs and a short one on two cores, the short
one goes last (started first, it left a model of 32 heads alone at the end: 9 min 6 s, not about 8.5)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# A page's seconds at one thread on 2 cores (ccs-tiny from an empty cache, benchmarks/README.md): only
# their proportions matter. An experiment not listed counts as `OTHER`.
SECONDS = {"model_card": 19, "textspan": 9, "ccs": 22, "pruning": 69, "concepts": 62, "ood": 62, "video": 65, "seeds": 139}
OTHER = 60


def work_left(stale: Mapping[tuple[str, str], bool], heads: Mapping[str, int] | None = None) -> dict[str, int]:
    """For each (model, experiment), whether its page is stale -> for each model the seconds of its
    stale pages, times the heads it analyses (`heads`, model -> count; 1 each if not given): its
    priority. A current page adds nothing."""
    work: dict[str, int] = {}
    for (model, experiment), is_stale in stale.items():
        seconds = SECONDS.get(experiment, OTHER) if is_stale else 0
        work[model] = work.get(model, 0) + seconds * (heads or {}).get(model, 1)
    return work


def analysed_heads(names: Iterable[str]) -> dict[str, int]:
    """Each model's analysed heads (heads per layer times analysed layers): `work_left`'s `heads`."""
    from ccs import models

    return {name: models.spec(name).heads * len(models.spec(name).analysed_layers) for name in names}
