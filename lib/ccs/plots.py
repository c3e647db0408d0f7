"""One look for every figure of the book."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

PALETTE = "colorblind"


def style() -> None:
    """Apply the book's seaborn theme (call once at the top of a notebook), and show tables without a
    meaningless 0, 1, 2, ... index."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})
    _tables_without_row_numbers()


def _tables_without_row_numbers() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:  # not in a notebook
        return
    import pandas as pd

    def numbered(df: pd.DataFrame) -> bool:
        return isinstance(df.index, pd.RangeIndex) and df.index.name is None

    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(
        pd.DataFrame, lambda df: df.to_html(index=not numbered(df), max_rows=pd.get_option("display.max_rows"))
    )
    formatters["text/plain"].for_type(pd.DataFrame, lambda df, p, cycle: p.text(df.to_string(index=not numbered(df))))


def notes(lines, title: str = "Note") -> None:
    """Show the page's notes (what a head-set rule did instead, and why) as MyST admonitions in the
    book; a plain ``Note: ...`` line where nothing renders markdown (a script, a terminal)."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    for line in lines:
        if get_ipython is not None and get_ipython() is not None:
            display(Markdown(f":::{{admonition}} {title}\n:class: note\n{line}\n:::"))
        else:
            print(f"{title}: {line}")
