"""Text description pools: the candidate texts TextSpan describes heads with, one per line.

- ``world``: generated from the concept world's vocabularies (``ccs.world.VOCAB``) in varied
  phrasings, plus descriptions of things the world does not contain. Every line keeps the concept
  (and value) that produced it: the ground truth for scoring head labels later. Lines are
  single-concept by default: multi-attribute lines ("a red heart in the bottom left on snow") have
  large projections on many heads at once and win almost every greedy pick.
- any pool file by path (``.txt``: one description per line; ``.tsv``/``.csv``: a ``text`` column
  and optionally ``concept``, ``value``, ``in_world``) or by URL (fetched only with
  ``download=True``, then cached). ``"textspan"`` names TextSpan's 3,498 general image
  descriptions, the pool of the paper for real models.

Text embeddings of a pool are cached on disk per (model weights, pool contents), in an ``.npz`` that
also holds their CRC-32; a downloaded pool file gets a ``.crc32`` sidecar. Both are verified when read:
a damaged file is reported (a ``ccs.cache.CacheWarning`` naming it) and recomputed or, for a
download that may not reach the network, named in an error that says to delete and fetch it again.

The package, one job a module:

- `ccs.pools.pool`: the `Pool` type and `PoolNotAvailableError`;
- `ccs.pools.world_pool`: the concept-world pool (`world`) and its phrasings (`PHRASINGS`);
- `ccs.pools.distractors`: the things the world does not contain, with their phrasings (`ABSENT`);
- `ccs.pools.loading`: a pool by name, path or URL (`load`), pool files (`read`, `write`), downloads
  (`fetch`) and `subset`;
- `ccs.pools.embeddings`: a pool's text embeddings, cached and checked (`embed`);
- here: every public name of the modules above, as ``ccs.pools.NAME``. The code looks a name up in the
  module that defines it: a test that replaces one patches that module.
"""

from __future__ import annotations

from ccs.pools.distractors import ABSENT
from ccs.pools.embeddings import embed
from ccs.pools.loading import ALIASES, TEXTSPAN_URL, fetch, load, read, subset, write
from ccs.pools.pool import Pool, PoolNotAvailableError
from ccs.pools.world_pool import GENERIC, PHRASINGS, SINGULAR, world

__all__ = [
    "TEXTSPAN_URL",
    "ALIASES",
    "PoolNotAvailableError",
    "Pool",
    "PHRASINGS",
    "SINGULAR",
    "GENERIC",
    "ABSENT",
    "world",
    "read",
    "write",
    "fetch",
    "subset",
    "load",
    "embed",
]
