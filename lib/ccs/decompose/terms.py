"""The mathematics of the decomposition: one batch of preprocessed images decomposed into the exact
terms of its normalised embeddings (`components`), and the check that a model's image tower
decomposes exactly (`check`, `DecompositionError`). The terms and their two conventions are described
in `ccs.decompose`'s docstring.

open_clip's blocks use ``nn.MultiheadAttention``, whose internals cannot be hooked, so the analysed
layers are re-run here from ``in_proj_weight``/``out_proj`` (same weights, same result).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

CONVENTIONS = ("centred", "textspan")


class DecompositionError(TypeError):
    """A model whose image embedding this module cannot decompose exactly."""


@dataclass
class Components:
    """Per-image terms of the normalised embedding (fp32 tensors): see the module docstring."""

    heads: torch.Tensor  # [B, K, H, D]
    mlps: torch.Tensor  # [B, K, D]
    rest: torch.Tensor  # [B, D]
    norms: torch.Tensor  # [B] norm of the unnormalised embedding

    def total(self) -> torch.Tensor:
        """The sum of all terms: the normalised image embedding [B, D]."""
        return self.rest + self.mlps.sum(1) + self.heads.sum((1, 2))


# ---------------------------------------------------------------------------------------------
# Checking the architecture


def _blocks(model: nn.Module) -> nn.ModuleList:
    """The vision tower's residual blocks, or a DecompositionError saying why it cannot be done."""
    from open_clip.transformer import Attention, CustomResidualAttentionBlock, ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", model)
    if not isinstance(visual, VisionTransformer):
        raise DecompositionError(
            f"Cannot decompose a {type(visual).__name__} image tower: only open_clip "
            "VisionTransformer towers (ViT-*) decompose into attention heads."
        )
    if visual.attn_pool is not None:
        raise DecompositionError(
            "Cannot decompose a ViT with attentional pooling (e.g. CoCa): its embedding is not a "
            "sum of per-head class-token terms."
        )
    if visual.pool_type != "tok":
        raise DecompositionError(
            f"Cannot decompose a ViT with pool_type={visual.pool_type!r}: the class-token-only "
            "decomposition needs class-token pooling ('tok')."
        )
    if visual.proj is None:
        raise DecompositionError("The vision tower has no output projection (proj is None).")
    for i, blk in enumerate(visual.transformer.resblocks):
        if isinstance(blk, ResidualAttentionBlock):
            if hasattr(blk, "ln_1_kv") or not blk.attn._qkv_same_embed_dim:
                raise DecompositionError(f"Block {i} is a cross-attention block.")
        elif isinstance(blk, CustomResidualAttentionBlock):
            a = blk.attn
            if (
                not isinstance(a, Attention)
                or a.logit_scale is not None
                or not isinstance(a.ln_inner, nn.Identity)
                or not isinstance(blk.ln_attn, nn.Identity)
            ):
                raise DecompositionError(
                    f"Block {i} normalises after mixing its heads (scale_attn / inner norm / "
                    "scaled cosine attention); its heads cannot be separated exactly."
                )
        else:
            raise DecompositionError(f"Block {i} is a {type(blk).__name__}, not an open_clip residual attention block.")
    return visual.transformer.resblocks


def check(model: nn.Module) -> None:
    """Raise a DecompositionError if `model` cannot be decomposed exactly."""
    _blocks(model)


# ---------------------------------------------------------------------------------------------
# One batch


def _attention(blk: nn.Module, x: torch.Tensor, cls_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-run a block's attention: (output for the queried tokens [B,T',W], head outputs z [B,H,dh]
    at the class token, before the out-projection)."""
    a = blk.attn
    h = blk.ln_1(x)
    B, T, W = h.shape
    if isinstance(a, nn.MultiheadAttention):
        H, ln_q, ln_k, head_scale = a.num_heads, None, None, None
    else:
        H, ln_q, ln_k, head_scale = a.num_heads, a.ln_q, a.ln_k, a.head_scale
    q, k, v = F.linear(h, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
    if cls_only:  # nothing after the last layer needs the patch tokens
        q = q[:, :1]
    split = lambda t: t.reshape(B, t.shape[1], H, W // H).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    if ln_q is not None:
        q, k = ln_q(q), ln_k(k)
    z = F.scaled_dot_product_attention(q, k, v)  # [B, H, T', dh]
    if head_scale is not None:
        z = z * head_scale
    out = a.out_proj(z.transpose(1, 2).reshape(B, z.shape[2], W))
    return out, z[:, :, 0]


def _head_terms(blk: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Each head's class-token output in the residual stream [B, H, W], with a 1/H bias share and
    the block's layer scale (so that the terms sum to the block's attention output)."""
    lin = blk.attn.out_proj
    W, H = lin.weight.shape[0], z.shape[1]
    terms = torch.einsum("bhd,whd->bhw", z, lin.weight.view(W, H, -1))
    if lin.bias is not None:
        terms = terms + lin.bias / H
    return blk.ls_1(terms)


@torch.no_grad()
def components(model: nn.Module, images: torch.Tensor, layers: int = 4, convention: str = "centred") -> Components:
    """Decompose the embeddings of a batch of preprocessed images [B, 3, S, S] (fp32 results)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
    blocks = _blocks(model)
    visual = getattr(model, "visual", model)
    L = len(blocks)
    if not 1 <= layers <= L:
        raise ValueError(f"layers must be in 1..{L}, not {layers}")
    first = L - layers
    x = visual._embeds(images)
    if not visual.transformer.batch_first:
        x = x.transpose(0, 1)
        for blk in blocks[:first]:
            x = blk(x)
        x = x.transpose(0, 1)
    else:
        for blk in blocks[:first]:
            x = blk(x)
    pre = x[:, 0].float()
    heads, mlps = [], []
    for i, blk in enumerate(blocks[first:]):
        last = i == layers - 1
        out, z = _attention(blk, x, cls_only=last)
        heads.append(_head_terms(blk, z).float())
        x = (x[:, :1] if last else x) + blk.ls_1(out)
        m = blk.ls_2(blk.mlp(blk.ln_2(x)))
        mlps.append(m[:, 0].float())
        x = x + m
    heads, mlps = torch.stack(heads, 1), torch.stack(mlps, 1)  # [B,K,H,W], [B,K,W]

    # ln_post with the image's statistics frozen: a linear map of each term
    ln = visual.ln_post
    y = x[:, 0].float()
    mean = y.mean(-1)
    std = (y.var(-1, unbiased=False) + ln.eps).sqrt()
    gamma, beta = ln.weight.float(), ln.bias.float()
    proj = visual.proj.float()
    norms = (F.layer_norm(y, ln.normalized_shape, gamma, beta, ln.eps) @ proj).norm(dim=-1)
    scale = (1 / (std * norms)).view(-1, 1)

    def mapped(t: torch.Tensor, share: float | torch.Tensor) -> torch.Tensor:
        """Map residual-stream terms [B, ..., W] to the normalised embedding space [B, ..., D]."""
        shape = (-1,) + (1,) * (t.dim() - 1)
        if convention == "centred":
            centred = t - t.mean(-1, keepdim=True)
            return (centred * gamma) @ proj * scale.view(shape)
        centred = t - mean.view(shape) * share
        return (centred * gamma) @ proj * scale.view(shape) + (share * beta) @ proj / norms.view(shape)

    H = heads.shape[2]
    n_terms = 2 * L + 1
    if convention == "centred":
        rest = mapped(pre, 0) + (beta @ proj) / norms.view(-1, 1)
    else:
        rest = mapped(pre, (2 * first + 1) / n_terms)
    return Components(heads=mapped(heads, 1 / (n_terms * H)), mlps=mapped(mlps, 1 / n_terms), rest=rest, norms=norms)
