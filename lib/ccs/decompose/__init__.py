"""Exact direct contributions of attention heads to a CLIP image embedding.

For an open_clip ViT with class-token pooling, the normalised image embedding is a sum of terms:

    e / |e| = rest + sum_l mlps[l] + sum_{l,h} heads[l, h]

over the last K layers ``l`` and their heads ``h``. A head's term needs only the class-token query
row of its attention: ``z_h[CLS] @ W_O[:, h]^T`` plus a 1/H share of the out-proj bias, mapped
through ``ln_post`` with the image's own std frozen (which makes it linear), ``@ proj``, and divided
by the norm of the embedding. ``mlps`` holds each analysed layer's MLP output at the class token and
``rest`` everything else (the patch embedding and all earlier layers, plus ``ln_post``'s bias).

Two conventions split ``ln_post``'s mean and bias among the terms; both sum to the same total:

- ``"centred"`` (default): each term is centred by its own mean over features and ``ln_post``'s
  bias goes to ``rest``. This applies the same linear map to every term, so a head's term depends
  only on that head (and the image's std and norm) -- the natural direct effect.
- ``"textspan"``: the convention of TextSpan's reference code (Gandelsman et al., 2024): the
  global mean and the bias are split equally among the 2L+1 layer-level terms (embedding, each
  attention, each MLP), a layer's attention share split equally among its heads.

The package, one job a module:

- `ccs.decompose.terms`: the mathematics: one batch of images decomposed into its terms
  (`components`, `Components`), and the check that a model decomposes exactly (`check`,
  `DecompositionError`);
- `ccs.decompose.folder`: a decomposition stored on disk (`Decomposition`): its arrays and meta.json
  with their CRC-32 checksums, written and verified;
- `ccs.decompose.streaming`: decomposing a whole image set batch by batch into a folder, resumably
  (`stream`), and into the project cache under a lock (`cached`, `exclusive`);
- here: every public name of the modules above, as ``ccs.decompose.NAME``. The code looks a name up
  in the module that defines it: a test that replaces one patches that module
  (``decompose.streaming``, not ``decompose``, for `components` as `stream` calls it).

The hashes that name a cached decomposition (of the model's weights and of the images) are
`ccs.fingerprints`'s.
"""

from __future__ import annotations

from ccs.cache import CacheCorruptError, CacheWarning  # noqa: F401  (re-exported for callers)
from ccs.decompose.folder import ARRAYS, CHECK_BYTES, FORMAT, Decomposition
from ccs.decompose.streaming import cached, exclusive, stream
from ccs.decompose.terms import CONVENTIONS, Components, DecompositionError, check, components

__all__ = [
    "CONVENTIONS",
    "FORMAT",
    "ARRAYS",
    "CHECK_BYTES",
    "CacheCorruptError",
    "CacheWarning",
    "DecompositionError",
    "Components",
    "check",
    "components",
    "Decomposition",
    "stream",
    "cached",
    "exclusive",
]
