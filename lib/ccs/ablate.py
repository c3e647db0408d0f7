"""Soft pruning of attention heads of a CLIP vision tower, inside the forward pass.

A head is pruned by editing its block's out-projection in place for the duration of a ``with``
block (so a pruned forward costs exactly what a plain one does), and everything touched is
restored bit-exactly afterwards:

    with ablate.pruned(model, ["L11.H5", "L10.H8"]):           # the paper's soft pruning
        emb = model.encode_image(x)
    with ablate.pruned(model, heads, "mean", reference=images):  # mean ablation
        emb = model.encode_image(x)

Heads are named as in the paper, ``L<layer>.H<head>`` with 0-indexed layers of the vision tower,
or given as ``(layer, head)`` pairs. Works for every tower that ``ccs.decompose`` accepts (open_clip
ViTs with ``nn.MultiheadAttention`` or custom ``Attention`` blocks).
"""

from __future__ import annotations

import operator
import re
from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ccs.decompose.streaming import _batches
from ccs.decompose.terms import DecompositionError, _blocks

MODES = ("zero", "mean")
_NAME = re.compile(r"L(\d+)\.H(\d+)")


class PruningError(ValueError):
    """Unknown head names, an out-of-range layer or head, or a model that cannot be pruned."""


def _tower_blocks(model: nn.Module) -> nn.ModuleList:
    try:
        return _blocks(model)
    except DecompositionError as e:
        raise PruningError(f"Cannot prune the heads of this model: {e}") from e


def _check_layer(layer, blocks, what: str) -> int:
    L = len(blocks)
    try:
        if isinstance(layer, bool):
            raise TypeError
        layer = operator.index(layer)
    except TypeError:
        raise PruningError(f"Layer {what} is not an integer (the tower has layers 0-{L - 1})") from None
    if not 0 <= layer < L:
        raise PruningError(f"Layer {what} is out of range: the tower has layers 0-{L - 1}")
    return layer


def parse_heads(model: nn.Module, heads) -> list[tuple[int, int]]:
    """Heads given by the paper's names ('L11.H5', 0-indexed layer of the vision tower) or
    (layer, head) pairs -> sorted unique (layer, head) pairs, validated against the model.

    A single name or a single (layer, head) tuple is also accepted. Raises PruningError naming
    the bad head and the valid range, or, for a model that ``ccs.decompose`` cannot handle,
    saying why."""
    blocks = _tower_blocks(model)
    L = len(blocks)
    if isinstance(heads, str) or (isinstance(heads, tuple) and len(heads) == 2 and all(isinstance(v, int) for v in heads)):
        heads = [heads]
    usage = "heads are named 'L<layer>.H<head>' (e.g. 'L11.H5') or given as (layer, head) pairs"
    out = set()
    for item in heads:
        if isinstance(item, str):
            m = _NAME.fullmatch(item.strip())
            if m is None:
                raise PruningError(f"Unknown head {item!r}: {usage}")
            pair = int(m[1]), int(m[2])
        else:
            try:
                pair = tuple(item)
            except TypeError:
                raise PruningError(f"Unknown head {item!r}: {usage}") from None
            if len(pair) != 2 or any(isinstance(v, (bool, str)) for v in pair):
                raise PruningError(f"Unknown head {item!r}: {usage}")
            try:
                pair = operator.index(pair[0]), operator.index(pair[1])
            except TypeError:
                raise PruningError(f"Unknown head {item!r}: {usage}") from None
        layer, head = pair
        if not 0 <= layer < L:
            raise PruningError(f"Head {item!r} is out of range: the tower has layers 0-{L - 1}")
        H = blocks[layer].attn.num_heads
        if not 0 <= head < H:
            raise PruningError(f"Head {item!r} is out of range: layer {layer} has heads 0-{H - 1}")
        out.add((layer, head))
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Mean head outputs


def _head_outputs(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Re-run a block's attention over all tokens of its (batch-first) input x [B, T, W]: each
    head's output z [B, H, T, dh] as it enters the out-projection (after head_scale, if any); the
    same computation as ``ccs.decompose.terms._attention``, for every query."""
    a = blk.attn
    h = blk.ln_1(x)
    B, T, W = h.shape
    H = a.num_heads
    q, k, v = F.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(B, T, H, W // H).transpose(1, 2) for t in (q, k, v))
    if not isinstance(a, nn.MultiheadAttention):
        q, k = a.ln_q(q), a.ln_k(k)
    z = F.scaled_dot_product_attention(q, k, v)
    if getattr(a, "head_scale", None) is not None:
        z = z * a.head_scale
    return z


class _Done(Exception):
    """Raised by a hook once the last wanted layer is seen: the rest of the tower is not needed."""


@torch.no_grad()
def head_means(model: nn.Module, images, layers: Iterable[int] | None = None, batch_size: int = 256) -> dict[int, torch.Tensor]:
    """Each head's mean output z_h (the attention-weighted values as they enter the
    out-projection, i.e. after open_clip's head_scale where a tower has one) over a reference set
    of images and all token positions: ``{layer: tensor [H, head_dim]}`` (fp32) for `layers`
    (default: every layer of the tower).

    `images`: uint8 [N, 3, H, W] (preprocessed with ``models.tensor_preprocess``) or an already
    preprocessed float tensor. The tower runs once per batch, in eval mode, and only up to the
    last wanted layer: forward pre-hooks on the residual blocks re-run each wanted block's
    attention from ``in_proj_weight`` on the block's input (``nn.MultiheadAttention`` cannot be
    hooked inside)."""
    from ccs.models import tensor_preprocess

    blocks = _tower_blocks(model)
    visual = getattr(model, "visual", model)
    layers = range(len(blocks)) if layers is None else layers
    layers = sorted({_check_layer(i, blocks, repr(i)) for i in layers})
    if not layers:
        return {}
    if len(images) == 0:
        raise PruningError("head_means needs at least one reference image")
    batch_first = getattr(visual.transformer, "batch_first", True)
    param = visual.conv1.weight
    sums = {
        i: torch.zeros(
            blocks[i].attn.num_heads,
            visual.transformer.width // blocks[i].attn.num_heads,
            dtype=torch.float64,
            device=param.device,
        )
        for i in layers
    }
    counts = {"n": 0}

    def hook(i):
        def pre(blk, args):
            x = args[0] if batch_first else args[0].transpose(0, 1)
            z = _head_outputs(blk, x)  # [B, H, T, dh]
            sums[i] += z.sum((0, 2), dtype=torch.float64)
            if i == layers[-1]:
                counts["n"] += z.shape[0] * z.shape[2]
                raise _Done

        return pre

    modes = {m: m.training for m in visual.modules()}
    handles = [blocks[i].register_forward_pre_hook(hook(i)) for i in layers]
    try:
        visual.eval()
        preprocess = lambda x: tensor_preprocess(model)(x)  # noqa: E731 (uint8 batches only)
        for x in _batches(images, preprocess, 0, batch_size):
            try:
                visual(x.to(device=param.device, dtype=param.dtype))
            except _Done:
                pass
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return {i: (s / counts["n"]).float() for i, s in sums.items()}


# ---------------------------------------------------------------------------------------------
# Pruning


@contextmanager
def pruned(model: nn.Module, heads, mode: str = "zero", means: dict | None = None, reference=None) -> Iterator[nn.Module]:
    """Prune `heads` of the model's vision tower for the duration of the ``with`` block; yields
    the model. Empty `heads` is a no-op.

    ``mode="zero"``: the paper's soft pruning: zero the head's columns ``h*dh:(h+1)*dh`` of
    ``out_proj.weight``. That alone removes the head exactly: the out-projection is linear and
    sums the heads, ``out = sum_h z_h @ W_O[:, h]^T + b``, so with zero columns z_h contributes
    nothing whatever q, k and v are. The paper's code also zeroes the head's query rows, which
    changes only z_h -- which then goes nowhere: redundant. The bias is not per-head and is kept
    (as in the paper's code).

    ``mode="mean"``: the head's output replaced by its mean over a reference set: the columns
    zeroed and ``W_O[:, h] @ mean_z_h`` added to ``out_proj.bias``, so that it costs nothing at
    run time. `means` from ``head_means()``, or `reference` images from which they are computed.

    Parameters are modified in place under ``torch.no_grad()``; every touched tensor is restored
    bit-exactly on exit, also when the block raises. (Autograd graphs built inside the block do
    not survive it: the restore bumps the parameters' version counters.)
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    pairs = parse_heads(model, heads)
    blocks = _tower_blocks(model)
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)
    if mode == "mean" and by_layer:
        if means is None:
            if reference is None:
                raise PruningError('mode="mean" needs `means` (from head_means) or `reference` images')
            means = head_means(model, reference, layers=list(by_layer))
        for layer in by_layer:
            lin, H = blocks[layer].attn.out_proj, blocks[layer].attn.num_heads
            shape = (H, lin.weight.shape[1] // H)
            if layer not in means:
                raise PruningError(f"`means` has no entry for layer {layer} (it has {sorted(means)})")
            if tuple(means[layer].shape) != shape:
                raise PruningError(f"means[{layer}] has shape {tuple(means[layer].shape)}, expected {shape} (heads, head_dim)")
            if lin.bias is None:
                raise PruningError(f"Layer {layer}'s out-projection has no bias to hold the means")

    # (view of a parameter, copy of it). Heads' columns are contiguous slices: plain slicing gives
    # views and costs microseconds (index tensors can cost milliseconds on a busy multi-threaded CPU)
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer, hs in by_layer.items():
                lin, H = blocks[layer].attn.out_proj, blocks[layer].attn.num_heads
                dh = lin.weight.shape[1] // H
                runs = []  # consecutive heads [first, last + 1)
                for h in hs:
                    if runs and runs[-1][1] == h:
                        runs[-1][1] = h + 1
                    else:
                        runs.append([h, h + 1])
                views = [lin.weight[:, a * dh : b * dh] for a, b in runs]
                saved += [(v, v.clone()) for v in views]
                if mode == "mean":
                    m = means[layer].to(device=lin.weight.device, dtype=torch.float32)
                    shift = sum(v.float() @ m[a:b].reshape(-1) for v, (a, b) in zip(views, runs))
                    saved.append((lin.bias, lin.bias.clone()))
                    lin.bias.add_(shift.to(lin.bias.dtype))
                for v in views:
                    v.zero_()
        yield model
    finally:
        with torch.no_grad():
            for view, old in reversed(saved):
                view.copy_(old)


# ---------------------------------------------------------------------------------------------
# Many prunings of one image set


def first_layer(model: nn.Module, heads) -> int:
    """The first layer with a head in `heads` (the number of layers where there is none)."""
    return min((layer for layer, _ in parse_heads(model, heads)), default=len(_tower_blocks(model)))


class UnprunedStream:
    """Normalised embeddings [N, D] of one image set under many prunings, each forward starting at the
    first pruned layer. Pruning heads of layer k and later leaves the blocks before k as they are, so
    the residual stream entering block k is the unpruned model's: it is kept and advanced block by
    block as the prunings it serves start later. Prunings taken in the order of their first layer
    therefore run each block before it once in all (the concept-world pages prune the last 4 of 6
    layers: a third to a half of every pruned forward saved). Exact: the same operations on the same
    batches as ``evaluate.image_embeddings`` inside ``pruned``. A pruning that starts before the kept
    layer starts the stream afresh.

        stream = UnprunedStream(model, images)
        for heads in sets:                      # best sorted by first layer
            with pruned(model, heads):
                emb = stream.embeddings(heads)

    The model must not change between calls other than through ``pruned`` of the heads passed.
    `supported(model, n)`: whether the tower is one whose forward this reproduces (open_clip's CLIP
    with a class-token ViT) and the stream of `n` images fits in `budget` bytes."""

    def __init__(self, model: nn.Module, images: torch.Tensor, batch_size: int = 256):
        from ccs.models import tensor_preprocess

        self.model, self.images, self.batch_size = model, images, batch_size
        self.visual, self.blocks = model.visual, _tower_blocks(model)
        self.preprocess = tensor_preprocess(model)
        self.layer, self.states = None, []  # the stream entering block `layer`, per batch

    @staticmethod
    def supported(model: nn.Module, n: int, budget: float = 2**31) -> bool:
        from open_clip.model import CLIP, CustomTextCLIP
        from open_clip.transformer import VisionTransformer

        visual = getattr(model, "visual", None)
        if not isinstance(model, (CLIP, CustomTextCLIP)) or type(model).encode_image not in (
            CLIP.encode_image,
            CustomTextCLIP.encode_image,
        ):
            return False
        if not isinstance(visual, VisionTransformer) or type(visual).forward is not VisionTransformer.forward:
            return False
        if visual.attn_pool is not None or visual.output_tokens or visual.training:
            return False
        tokens, width = visual.positional_embedding.shape
        return n * tokens * width * visual.conv1.weight.element_size() <= budget

    def _advance(self, layer: int) -> None:
        """Bring the kept stream to the input of block `layer` (unpruned below it)."""
        if self.layer is None or layer < self.layer:
            self.states, self.layer = [], 0
            device = next(self.model.parameters()).device
            for i in range(0, len(self.images), self.batch_size):
                x = self.preprocess(self.images[i : i + self.batch_size]).to(device)
                x = self.visual._embeds(x)
                self.states.append(x if self.visual.transformer.batch_first else x.transpose(0, 1).contiguous())
        for blk in self.blocks[self.layer : layer]:
            self.states = [blk(x) for x in self.states]
        self.layer = layer

    @torch.no_grad()
    def embeddings(self, heads) -> torch.Tensor:
        """The embeddings of the model as it is now, with `heads` (and no others) pruned."""
        first = first_layer(self.model, heads)
        self._advance(first)
        out = []
        for x in self.states:
            for blk in self.blocks[first:]:
                x = blk(x)
            if not self.visual.transformer.batch_first:
                x = x.transpose(0, 1)
            pooled, _ = self.visual._pool(x)
            if self.visual.proj is not None:
                pooled = pooled @ self.visual.proj
            out.append(F.normalize(pooled.float(), dim=-1).cpu())
        return torch.cat(out)
