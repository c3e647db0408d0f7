"""Can a model's patch tokens tell the world's textures apart? A linear probe per layer.

    python benchmarks/texture_probe.py                 # the shipped ccs-tiny
    python benchmarks/texture_probe.py --n 6000

Issue #13 used this probe to choose the patterns before training on them: images of the test
split, the token of the 3x3 cell that holds the object group's centre, read after the patch
embedding (layer 0) and after every block; a logistic regression fitted on `--n` images and scored
on `--n // 2` fresh ones, for the three textures and for the two patterns alone, by object size.
On the second ccs-tiny (trained on 2 px stripes against 2 px checks) the two patterns read at
0.51-0.55 at every layer; stripes against the dots that replaced the checks read at 0.85.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ccs import models, world


@torch.no_grad()
def tokens(model, images: torch.Tensor) -> list[torch.Tensor]:
    """The vision tower's tokens [N, 1 + 9, width] after ln_pre and after each block."""
    v = model.visual
    x = v.conv1(models.tensor_preprocess(model)(images)).flatten(2).transpose(1, 2)
    x = v.ln_pre(torch.cat([v.class_embedding.expand(len(x), 1, -1), x], 1) + v.positional_embedding)
    out = [x]
    for block in v.transformer.resblocks:
        x = block(x)
        out.append(x)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=models.TINY)
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = models.load(args.model)[0].eval()
    fit, test = world.sample(args.n, 5, "test"), world.sample(args.n // 2, 6, "test")

    def data(batch):
        cell = 1 + np.array([world.POSITIONS.index(p) for p in batch.attributes["position"]])
        y = np.array([world.TEXTURES.index(t) for t in batch.attributes["texture"]])
        return [t[np.arange(len(y)), cell].float().numpy() for t in tokens(model, batch.images)], y

    (xf, yf), (xt, yt) = data(fit), data(test)
    small = (test.attributes["size"] == "small").to_numpy()
    patterned_f, patterned_t = yf > 0, yt > 0
    names = " / ".join(world.TEXTURES[1:])
    print(f"{args.model}: linear probe on the group's patch token, {args.n} fitting and {args.n // 2} test images")
    print(f"layer  {'3 textures':>10}  {names + ' (small, large)':>32}")
    for layer, (f, t) in enumerate(zip(xf, xt)):
        three = LogisticRegression(max_iter=2000).fit(f, yf).predict(t) == yt
        two = LogisticRegression(max_iter=2000).fit(f[patterned_f], yf[patterned_f]).predict(t[patterned_t]) == yt[patterned_t]
        s = small[patterned_t]
        print(f"{layer:5d}  {three.mean():10.2f}  {two.mean():14.2f} ({two[s].mean():.2f}, {two[~s].mean():.2f})")


if __name__ == "__main__":
    main()
