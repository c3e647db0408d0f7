"""nbval settings for the executed notebooks under book/runs (see tests/sanitize.cfg for the rest).

Compared: every cell's plain-text output (the rounded tables that carry the book's claims).
Not compared: figures (nbval's default, glued ones too), HTML renderings of the same tables,
widgets, and stderr, which holds progress bars and library warnings that differ from run to run.
"""
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # kernels inherit this: no progress bars in outputs

# Glued values (myst_nb.glue(..., display=False)) are stored under this prefix; their text/plain
# form is compared like any output, their figures and HTML tables are not.
GLUE = "application/papermill.record/"
SKIPPED_MIME = ("text/html", "application/vnd.jupyter.widget-view+json",
                GLUE + "text/html", GLUE + "image/png", GLUE + "image/jpeg", GLUE + "image/svg+xml")


def _is_compared(output: dict) -> bool:
    return not (output.get("output_type") == "stream" and output.get("name") == "stderr")


def pytest_collection_modifyitems(items):
    for item in items:
        if type(item).__name__ != "IPyNbCell":
            continue
        parent = item.parent
        if not getattr(parent, "_ccs_patched", False):
            parent.skip_compare = tuple(parent.skip_compare) + SKIPPED_MIME
            parent._ccs_patched = True
        compare = item.compare_outputs

        def filtered(test, ref, skip_compare=None, _compare=compare):
            return _compare([o for o in test if _is_compared(o)],
                            [o for o in ref if _is_compared(o)], skip_compare)

        item.compare_outputs = filtered


# nbval re-executes every page it collects, from an empty cache in CI. All pages of the default
# model are regression-tested; of the other trained models, the pages that summarise a model (its
# card and its CCS), which are quick: their experiment pages are as expensive as the default's and
# would not fit the 20-minute budget of `make test` (README, "The two commands").
NBVAL_OTHER_MODELS = ("model_card", "ccs")
# The seeds page repeats the pruning, shifted-data and concept pages' claims on three analysis seeds for
# three sources of sets (about 10 minutes a model): those pages are regression-tested, the seeds pages'
# agreement reaches the replication page, and all of them together would not fit the 20-minute budget.
NBVAL_SKIPPED = ("seeds",)


def pytest_ignore_collect(collection_path, config):
    from pathlib import Path

    p = Path(collection_path)
    if p.suffix != ".ipynb" or p.parent.parent.name != "runs":
        return None
    from ccs import models

    if p.stem in NBVAL_SKIPPED:
        return True
    return True if p.parent.name != models.TINY and p.stem not in NBVAL_OTHER_MODELS else None
