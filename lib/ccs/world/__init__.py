"""The concept world: generated images, captions and clips whose concepts are known.

Every image shows a group of 1-3 identical objects on a textured background scene. Its concepts:

- ``shape`` (8 trained shapes), ``colour`` (8), ``size`` (large / small, radius 7 / 5 px),
  ``texture`` (plain / striped / dotted, in a darker shade of the colour), ``position`` (the 3x3 grid cell of
  the group's centre, named "top left" ... "center" ... "bottom right"), ``scene`` (8 textured
  backgrounds: the world's stand-in for the paper's "location", where a photo was taken),
  ``count`` (one / two / three), and for clips ``motion`` (left / right / up / down).

Splits (``SPLITS``):

- ``train``: the training distribution (training draws its batches from `train_batch`, seeded by
  step, with "sibling" pairs that differ in one attribute);
- ``test``: the same distribution from a seed stream never used in training;
- ``sketch``: objects drawn as outlines only (texture is then invisible) -- shifted;
- ``noisy``: blurred and with Gaussian pixel noise -- shifted;
- ``novel-shades``: colours as lighter or darker shades never seen in training -- shifted;
- ``novel-shapes``: held-out shapes (``NOVEL_SHAPES``) never seen in training -- out of distribution.

Variants (``VARIANTS``, chosen per process with `use`): ``base`` is the world above; ``rich`` doubles
the two concepts whose values are categorical rather than points on a line or a plane (16 shapes,
16 scenes), for the regime study (ccs.regime): a head can only give five consistent TextSpan texts
about a concept that offers five distinct, well-separated directions. ``grey`` and ``rich-grey`` draw
the scenes of ``base`` and ``rich`` in grey (``GREY_SCENES``), so that no scene name also means a colour.

The package, one job a module:

- `ccs.world.concepts`: the concepts and their values (`VOCAB`, `SHAPES`, ...), the splits
  (`SPLITS`), the variants (`VARIANTS`, `use`, `current`), and the zero-shot prompts and tasks
  (`TEMPLATES`, `Task`, `tasks`);
- `ccs.world.render`: the pixels: scene textures, shapes and their textures, an image rendered from its
  specs, and a grid of images for previews (`grid`);
- `ccs.world.captions`: the caption grammar (`full_caption`, `parse_caption`, and the varied captions
  of training and test images);
- `ccs.world.sampling`: what images show, drawn at random and placed, and the batches of a split
  (`sample`), of training (`train_batch`) and of clips (`clips`);
- here: every public name of the modules above, as ``ccs.world.NAME``. The code looks a name up in the
  module that defines it: a test that replaces one patches that module. The vocabularies are the same
  list and dict objects everywhere (`use` changes them in place).
"""

from __future__ import annotations

from ccs.world.captions import full_caption, parse_caption
from ccs.world.concepts import (
    CLIP_CONCEPTS,
    COLOURS,
    CONCEPTS,
    COUNTS,
    EXTRA_SCENES,
    EXTRA_SHAPES,
    GREY_SCENES,
    MOTIONS,
    NOVEL_SHAPES,
    POSITIONS,
    SCENES,
    SHAPES,
    SIZES,
    SPLITS,
    TEMPLATES,
    TEXTURES,
    VARIANTS,
    VOCAB,
    Task,
    current,
    tasks,
    use,
)
from ccs.world.render import CELL, SIZE, SS, WIN, grid
from ccs.world.sampling import ClipBatch, WorldBatch, clips, sample, train_batch

__all__ = [
    "SIZE",
    "CELL",
    "SS",
    "WIN",
    "SHAPES",
    "EXTRA_SHAPES",
    "NOVEL_SHAPES",
    "COLOURS",
    "SIZES",
    "TEXTURES",
    "POSITIONS",
    "SCENES",
    "EXTRA_SCENES",
    "VARIANTS",
    "GREY_SCENES",
    "COUNTS",
    "MOTIONS",
    "CONCEPTS",
    "CLIP_CONCEPTS",
    "VOCAB",
    "SPLITS",
    "TEMPLATES",
    "use",
    "current",
    "Task",
    "tasks",
    "WorldBatch",
    "ClipBatch",
    "sample",
    "train_batch",
    "clips",
    "full_caption",
    "parse_caption",
    "grid",
]
