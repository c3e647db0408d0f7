"""Concept Consistency in CLIP: the shared library behind the book.

One concept of the paper per module: `models` (registry and loading), `world` (the generated concept
world), `decompose` (per-head direct contributions), `textspan`, `pools`, `llm` (labeler and judge),
`scores` (CCS), `ablate`, `evaluate`, `plots`, `cache`, `pipeline` and `cli`.
"""

__version__ = "0.1.0"

import warnings

# tqdm.auto warns in kernels without ipywidgets, printing a path of this machine into the notebook;
# plain text progress bars are what we want there anyway.
warnings.filterwarnings("ignore", message="IProgress not found")
