"""The concept world: determinism, ground truth in the pixels, captions, siblings, splits, clips."""

import numpy as np
import open_clip
import pytest
import torch

from ccs import world
from ccs.world import concepts, render


@pytest.fixture(scope="module")
def batch():
    return world.sample(96, seed=7, split="test")


def _object_pixels(images, attributes):
    """Per image, the mask of pixels whose colour is the attribute colour (up to tint and rounding)."""
    col = torch.tensor([world.COLOURS[c] for c in attributes["colour"]], dtype=torch.float32)
    diff = (images.float() - col[:, :, None, None]).abs().amax(1)
    return diff <= 14


def test_sample_is_deterministic_and_seeded(batch):
    again = world.sample(96, seed=7, split="test")
    assert torch.equal(batch.images, again.images)
    assert batch.captions == again.captions
    assert batch.attributes.equals(again.attributes)
    other = world.sample(96, seed=8, split="test")
    assert not torch.equal(batch.images, other.images)
    assert torch.equal(world.train_batch(16, 3).images, world.train_batch(16, 3).images)


def test_format_and_vocabulary(batch):
    assert batch.images.dtype == torch.uint8 and batch.images.shape == (96, 3, world.SIZE, world.SIZE)
    assert list(batch.attributes.columns) == world.CONCEPTS and len(batch) == 96
    for c in world.CONCEPTS:
        assert set(batch.attributes[c]) <= set(world.VOCAB[c])
    assert len(world.VOCAB["shape"]) >= 8 and len(world.VOCAB["colour"]) >= 8
    assert len(world.VOCAB["texture"]) >= 3 and len(world.VOCAB["scene"]) >= 6
    assert len(world.VOCAB["position"]) == 9 and "center" in world.VOCAB["position"]


def test_pixels_show_the_attribute_colour_at_the_attribute_position(batch):
    mask = _object_pixels(batch.images, batch.attributes)
    ys, xs = torch.meshgrid(torch.arange(world.SIZE), torch.arange(world.SIZE), indexing="ij")
    for i, row in batch.attributes.iterrows():
        m = mask[i]
        assert m.sum() >= 1, row.to_dict()
        cx, cy = float(xs[m].float().mean()), float(ys[m].float().mean())
        # the group's centre lies in its cell; the pixel centroid of a triangle or heart sits up to
        # ~2 px off the centre of its bounding shape, hence the tolerance
        r, c = divmod(world.POSITIONS.index(row["position"]), 3)
        assert c * world.CELL - 3 <= cx <= (c + 1) * world.CELL + 3, (i, row.to_dict(), cx, cy)
        assert r * world.CELL - 3 <= cy <= (r + 1) * world.CELL + 3, (i, row.to_dict(), cx, cy)


def test_large_objects_cover_more_pixels_than_small_ones(batch):
    area = _object_pixels(batch.images, batch.attributes).sum((1, 2)).numpy()
    a = batch.attributes.assign(area=area / batch.attributes["count"].map(world.COUNTS.index).add(1))
    plain = a[a.texture == "plain"].groupby("size")["area"].median()
    assert plain["large"] / plain["small"] >= 1.7  # radius ratio 1.4 -> area ratio ~2


def test_captions_parse_back_to_their_attributes(batch):
    tb = world.train_batch(64, 0)
    for caps, attrs in ((batch.captions, batch.attributes), (tb.captions, tb.attributes)):
        named = {c: 0 for c in world.CONCEPTS}
        for cap, (_, row) in zip(caps, attrs.iterrows()):
            parsed = world.parse_caption(cap)
            assert parsed, cap
            for c, v in parsed.items():
                assert row[c] == v, (cap, row.to_dict())
                named[c] += 1
        assert min(named.values()) > 0  # every concept is named somewhere
        assert named["shape"] > 0.6 * len(caps)


def test_siblings_differ_in_exactly_one_named_attribute():
    tb = world.train_batch(64, 5)
    n_sib = 16
    base, sib = tb.attributes.iloc[:n_sib], tb.attributes.iloc[64 - n_sib :]
    diffs = (base.values != sib.values).sum(1)
    assert (diffs == 1).all()
    for k in range(n_sib):
        c = world.CONCEPTS[int(np.flatnonzero(base.values[k] != sib.values[k])[0])]
        for cap, row in ((tb.captions[k], base.iloc[k]), (tb.captions[64 - n_sib + k], sib.iloc[k])):
            assert world.parse_caption(cap).get(c) == row[c], (c, cap)


def test_sibling_groups_tell_apart_one_concept_with_distinct_values():
    tb = world.train_batch(64, 5, sibling_frac=0.75, sibling_group=8, sibling_weights={"shape": 1, "texture": 1})
    a = tb.attributes.values
    n_sib = int(64 * 0.75 * 7 / 8)
    assert len(tb) == 64
    groups = {}
    for j in range(64 - n_sib, 64):
        # its group's first image: the one independent image it differs from in one attribute
        parent = [i for i in range(64 - n_sib) if (a[i] != a[j]).sum() == 1]
        assert len(parent) == 1, tb.attributes.iloc[j].to_dict()
        c = world.CONCEPTS[int(np.flatnonzero(a[parent[0]] != a[j])[0])]
        assert c in ("shape", "texture")
        groups.setdefault(parent[0], []).append(j)
        assert world.parse_caption(tb.captions[j]).get(c) == a[j][world.CONCEPTS.index(c)]
    sizes = []
    for i, members in groups.items():
        rows = tb.attributes.iloc[[i] + members]
        c = [c for c in world.CONCEPTS if rows[c].nunique() > 1]
        assert len(c) == 1 and rows[c[0]].nunique() == len(rows)  # all values distinct
        sizes.append((len(rows), min(8, len(world.VOCAB[c[0]]))))
    # full groups (shape: 8, texture: its 3 values); only the last may be cut short by the batch
    assert all(n == full for n, full in sizes[:-1]) and sizes[-1][0] <= sizes[-1][1]
    assert (8, 8) in sizes and (3, 3) in sizes


def test_sibling_groups_of_a_two_valued_concept_never_run_out_of_images():
    tb = world.train_batch(32, 0, sibling_frac=1.0, sibling_group=8, sibling_weights={"size": 1})
    n_base = 32 - int(32 * 7 / 8)
    assert n_base < len(tb) <= 32  # pairs only (size has 2 values), one per independent image
    base, sib = tb.attributes.iloc[:n_base], tb.attributes.iloc[n_base:]
    assert (base["size"].values[: len(sib)] != sib["size"].values).all()


def test_captions_fit_the_context_length():
    tok = open_clip.SimpleTokenizer(context_length=64)
    caps = world.train_batch(128, 1).captions + world.clips(32, 0, frames=2).captions
    lengths = (tok(caps) != 0).sum(1)
    import json
    from ccs import models

    ctx = json.loads((models.CONFIG_DIR / "ccs-tiny.json").read_text())["text_cfg"]["context_length"]
    assert int(lengths.max()) <= ctx


@pytest.mark.parametrize("split", [s for s in world.SPLITS if s not in ("train", "test")])
def test_shifted_and_ood_splits(split, batch):
    b = world.sample(32, seed=7, split=split)
    assert b.images.shape == (32, 3, world.SIZE, world.SIZE)
    if split == "novel-shapes":
        assert set(b.attributes["shape"]) <= set(world.NOVEL_SHAPES)
    else:
        assert set(b.attributes["shape"]) <= set(world.SHAPES)
        # same seed: same attributes as the test split, different pixels
        assert b.attributes.equals(world.sample(32, seed=7, split="test").attributes)
    assert not torch.equal(b.images, batch.images[:32])
    if split == "sketch":  # outlines cover fewer pixels than filled objects
        t = world.sample(32, seed=7, split="test")
        assert _object_pixels(b.images, b.attributes).sum() < 0.8 * _object_pixels(t.images, t.attributes).sum()
    with pytest.raises(ValueError):
        world.sample(2, 0, "nope")


def test_clips_move_in_their_motion_direction():
    c = world.clips(24, seed=3, frames=6)
    assert c.frames.shape == (24, 6, 3, world.SIZE, world.SIZE) and c.frames.dtype == torch.uint8
    assert "motion" in c.attributes and set(c.attributes["motion"]) <= set(world.MOTIONS)
    first = _object_pixels(c.frames[:, 0], c.attributes)
    last = _object_pixels(c.frames[:, -1], c.attributes)
    ys, xs = torch.meshgrid(torch.arange(world.SIZE), torch.arange(world.SIZE), indexing="ij")
    for i, m in enumerate(c.attributes["motion"]):
        dx = float(xs[last[i]].float().mean() - xs[first[i]].float().mean())
        dy = float(ys[last[i]].float().mean() - ys[first[i]].float().mean())
        expect = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[m]
        assert dx * expect[0] + dy * expect[1] > 5, (m, dx, dy)
    for cap, (_, row) in zip(c.captions, c.attributes.iterrows()):
        assert world.parse_caption(cap).get("motion") == row["motion"], cap


def test_tasks_cover_every_concept(batch):
    t = world.tasks()
    assert list(t) == world.CONCEPTS and "motion" in world.tasks(motion=True)
    for name, task in t.items():
        assert task.concept == name and all("{}" in s for s in task.templates)
        labels = task.labels(batch.attributes)
        assert labels.shape == (96,) and labels.min() >= 0 and labels.max() < len(task.classnames)


def test_full_captions_name_every_attribute(batch):
    for _, row in batch.attributes.head(20).iterrows():
        parsed = world.parse_caption(world.full_caption(row))
        assert all(parsed[c] == row[c] for c in world.CONCEPTS if c != "texture" or row[c] != "plain")


def test_the_rich_variant_doubles_the_categorical_concepts_and_leaves_the_base_world_unchanged():
    base = world.sample(40, 5)
    try:
        world.use("rich")
        assert world.current() == "rich"
        assert len(world.VOCAB["shape"]) == len(world.VOCAB["scene"]) == 16
        assert {t.concept: len(t.classnames) for t in world.tasks().values()}["scene"] == 16
        rich = world.sample(400, 5)
        assert set(rich.attributes["shape"]) == set(world.SHAPES)  # every new shape is drawn
        assert set(rich.attributes["scene"]) == set(world.SCENES)
        # a new shape is its own silhouette: no two shapes give the same mask
        u, v = torch.meshgrid(torch.linspace(-1.2, 1.2, 48), torch.linspace(-1.2, 1.2, 48), indexing="xy")
        masks = {k: render._shape_mask(k, u, v) for k in world.SHAPES}
        assert all(m.float().mean() > 0.15 for m in masks.values())
        for a in world.SHAPES:
            for b in world.SHAPES:
                if a < b:
                    assert (masks[a] ^ masks[b]).float().mean() > 0.03, (a, b)
        textures = render._scene_textures()
        assert textures.shape[0] == 16
        means = textures.mean((2, 3))
        assert torch.cdist(means, means).add(torch.eye(16) * 1e3).min() > 5  # 16 distinct scenes
    finally:
        world.use("base")
    assert len(world.SHAPES) == 8 and world.NOVEL_SHAPES[0] in concepts._ALL_SHAPES
    assert torch.equal(world.sample(40, 5).images, base.images)
    with pytest.raises(ValueError, match="unknown world variant"):
        world.use("huge")


@pytest.mark.parametrize("variant, scenes", [("grey", 8), ("rich-grey", 16)])
def test_grey_variants_draw_each_scene_s_pattern_without_its_colour(variant, scenes):
    base = world.sample(40, 5)
    try:
        world.use(variant.removesuffix("grey").rstrip("-") or "base")
        coloured = render._scene_textures()
        world.use(variant)
        grey = render._scene_textures()
        shown = world.sample(40, 5)
    finally:
        world.use("base")
    assert grey.shape[0] == scenes and torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert not torch.equal(coloured[:, 0], coloured[:, 1])
    for g, c in zip(grey[:, 0], coloured.mean(1)):  # the same pattern: luminance follows the coloured scene's
        assert torch.corrcoef(torch.stack([g.flatten(), c.flatten()]))[0, 1] > 0.9
    changed = shown.images != base.images
    assert changed.any() and not changed.all()  # the backgrounds changed, not the objects' pixels
    assert torch.equal(world.sample(40, 5).images, base.images)


def test_the_single_concept_share_of_training_captions_is_a_lever():
    few = world.train_batch(256, 3, single=0.0).captions
    many = world.train_batch(256, 3, single=1.0).captions
    prompts = {t.format(v) for c, ts in world.TEMPLATES.items() for t in ts for v in world.VOCAB[c]}
    assert sum(c in prompts for c in many) > 200 > 20 > sum(c in prompts for c in few)
