"""Soft pruning of attention heads: exact, local, restored, and mean ablation by the right amount."""

import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from ccs import ablate
from ccs import decompose as dc
from ccs import fingerprints, models
from ccs.decompose import terms

pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random biases, norm parameters and head scales (a fresh model has zeros and ones there,
    which would hide a lost bias or a forgotten head_scale)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or "ln_" in name or "head_scale" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _uint8(n, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.fixture(scope="module")
def b32():
    """A perturbed random-init ViT-B-32 (QuickGELU, nn.MultiheadAttention blocks), 2 images."""
    torch.manual_seed(0)
    model = _perturb(models.load("ViT-B-32-OpenAI", untrained=True).model).eval()
    return model, models.tensor_preprocess(model)(_uint8(2, 224))


@pytest.fixture(scope="module")
def tiny():
    """The packaged, trained ccs-tiny and 4 world-sized (48 px) images."""
    model = models.load("ccs-tiny").model
    return model, models.tensor_preprocess(model)(_uint8(4, 48, seed=1))


def _tower(**kw):
    torch.manual_seed(0)
    kw = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 3, "heads": 4, "mlp_ratio": 2, "output_dim": 16, **kw}
    return _perturb(VisionTransformer(**kw).eval())


@pytest.fixture(scope="module")
def custom():
    """A custom-block tower (open_clip's Attention) with qk-norm, head scales and layer scale."""
    tower = _tower(block_type="custom", qk_norm=True, scale_heads=True, ls_init_value=0.5)
    return tower, torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _encode(model, x):
    with torch.no_grad():
        return model.encode_image(x) if hasattr(model, "encode_image") else model(x)


def _by_hand(model, x, heads, means=None):
    """The output with the heads' out-projection columns zeroed by hand, and with `means` their
    mean terms W_O[:, h] @ mean_h added to the bias, one head at a time (then all put back)."""
    blocks = terms._blocks(model)
    saved = {}
    with torch.no_grad():
        for layer, head in heads:
            lin = blocks[layer].attn.out_proj
            saved.setdefault(layer, (lin.weight.clone(), lin.bias.clone()))
            dh = lin.weight.shape[1] // blocks[layer].attn.num_heads
            if means is not None:
                lin.bias += lin.weight[:, head * dh : (head + 1) * dh] @ means[layer][head]
            lin.weight[:, head * dh : (head + 1) * dh] = 0
    try:
        return _encode(model, x)
    finally:
        with torch.no_grad():
            for layer, (w, b) in saved.items():
                blocks[layer].attn.out_proj.weight.copy_(w)
                blocks[layer].attn.out_proj.bias.copy_(b)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model, state):
    now = model.state_dict()
    return now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())


# ---------------------------------------------------------------------------------------------
# zero ablation


@pytest.mark.parametrize("fixture", ["b32", "custom"])
def test_zero_ablation_equals_zeroing_the_columns_by_hand(fixture, request):
    model, x = request.getfixturevalue(fixture)
    L = len(terms._blocks(model))
    heads = [(L - 1, 2), (L - 2, 1), (L - 1, 3)]
    plain = _encode(model, x)
    with ablate.pruned(model, heads) as m:
        assert m is model
        got = _encode(model, x)
    expected = _by_hand(model, x, heads)
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    assert (got - plain).abs().max() > 1e-3  # not vacuous: the heads matter
    assert torch.equal(_encode(model, x), plain)  # and the model is back


def test_pruning_leaves_earlier_layers_unchanged(b32):
    model, x = b32
    blocks = terms._blocks(model)
    outs = []
    hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o.clone())) for b in blocks]
    try:
        plain = _encode(model, x)
        before, outs[:] = list(outs), []
        with ablate.pruned(model, ["L6.H2"]):
            pruned = _encode(model, x)
    finally:
        for h in hooks:
            h.remove()
    assert all(torch.equal(a, b) for a, b in zip(before[:6], outs[:6]))
    assert not torch.allclose(before[6], outs[6], atol=1e-4)
    assert not torch.allclose(plain, pruned, atol=1e-4)


def test_names_and_pairs_prune_the_same_heads(b32):
    model, x = b32
    with ablate.pruned(model, ["L11.H5", "L9.H3"]):
        a = _encode(model, x)
    with ablate.pruned(model, [(9, 3), (11, 5), (11, 5)]):
        b = _encode(model, x)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# restoring


@pytest.mark.parametrize("mode", ablate.MODES)
def test_state_is_restored_bit_exactly(b32, mode):
    model, x = b32
    state = _state(model)
    heads = ["L11.H5", "L11.H0", "L3.H7"]
    means = ablate.head_means(model, x, layers=[3, 11]) if mode == "mean" else None
    with ablate.pruned(model, heads, mode, means=means):
        assert not _same_state(model, state)  # not vacuous: the block does change the weights
    assert _same_state(model, state)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with ablate.pruned(model, heads, mode, means=means):
            _encode(model, x)
            raise Boom
    assert _same_state(model, state)


@pytest.mark.parametrize("mode", ablate.MODES)
def test_the_fingerprint_follows_every_edit_of_the_weights(b32, mode):
    """Cache keys of pruned embeddings: the fingerprint (whose per-tensor digests are kept between
    calls) is the one a from-scratch hash gives, inside and after a pruned block and after an
    in-place edit by hand."""
    model, x = b32

    def fresh():
        fingerprints._DIGESTS.clear()
        return fingerprints.fingerprint(model)

    before = fingerprints.fingerprint(model)
    assert before == fresh()
    means = ablate.head_means(model, x, layers=[11]) if mode == "mean" else None
    with ablate.pruned(model, ["L11.H5"], mode, means=means):
        inside = fingerprints.fingerprint(model)
        assert inside != before and inside == fresh()
    assert fingerprints.fingerprint(model) == before
    old = model.visual.proj[0, 0].item()
    with torch.no_grad():
        model.visual.proj[0, 0] += 1
    try:
        assert fingerprints.fingerprint(model) != before
        assert fingerprints.fingerprint(model) == fresh()
    finally:
        with torch.no_grad():
            model.visual.proj[0, 0] = old


def test_an_image_tensor_hashes_like_its_array_and_again_after_an_edit():
    """`images_hash` keeps a CPU tensor's digest while the tensor and the one it views are unchanged:
    the value is that of the same images as an array, and an in-place edit (of it or of its base) gives
    a new one."""
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    first = fingerprints.images_hash(images)
    assert first == fingerprints.images_hash(images.numpy().copy()) == fingerprints.images_hash(images)
    images[2, 1, 3, 3] += 1
    assert fingerprints.images_hash(images) != first
    assert fingerprints.images_hash(images) == fingerprints.images_hash(images.numpy().copy())
    assert fingerprints.images_hash(images[:, :, :4]) == fingerprints.images_hash(images.numpy()[:, :, :4])  # a strided view
    frames = images.view(5, 1, 3, 8, 8).expand(5, 2, 3, 8, 8).contiguous()  # a video set's frames, flattened at each use
    flat = fingerprints.images_hash(frames.flatten(0, 1))
    assert flat == fingerprints.images_hash(frames.flatten(0, 1)) == fingerprints.images_hash(frames.numpy().reshape(10, 3, 8, 8))
    frames[4, 1] = 0  # through the base: every view of it is another image set now
    assert fingerprints.images_hash(frames.flatten(0, 1)) != flat
    assert fingerprints.images_hash(frames.flatten(0, 1)) == fingerprints.images_hash(frames.numpy().reshape(10, 3, 8, 8))


def test_bad_means_change_nothing(b32):
    model, x = b32
    state = _state(model)
    with pytest.raises(ablate.PruningError, match="layer 10"):
        with ablate.pruned(model, ["L11.H5", "L10.H1"], "mean", means=ablate.head_means(model, x, layers=[11])):
            pass
    assert _same_state(model, state)


# ---------------------------------------------------------------------------------------------
# mean ablation


def _check_mean_delta(model, x, means, heads):
    """Mean-ablating last-layer heads moves the class token's residual right after that block's
    attention, where the heads write, by exactly the sum of (mean term - the head's own term).
    (Not at ln_post's input: the last block's MLP, which follows, reacts to the change.)"""
    blocks = terms._blocks(model)
    blk, layer = blocks[-1], len(blocks) - 1
    seen = {}
    hooks = [
        blk.register_forward_pre_hook(lambda m, a: seen.setdefault("input", a[0].clone())),
        blk.ln_2.register_forward_pre_hook(lambda m, a: seen.setdefault("resid", []).append(a[0][:, 0].clone())),
    ]
    try:
        _encode(model, x)
        with ablate.pruned(model, [(layer, head) for head in heads], "mean", means=means):
            _encode(model, x)
    finally:
        for h in hooks:
            h.remove()
    plain, pruned = seen["resid"]
    with torch.no_grad():
        z = terms._attention(blk, seen["input"], cls_only=True)[1]  # [B, H, dh] at the class token
        dh = z.shape[-1]
        expected = 0
        for head in heads:
            w_h = blk.attn.out_proj.weight[:, head * dh : (head + 1) * dh]
            expected = expected + (means[layer][head] - z[:, head]) @ w_h.T
        expected = blk.ls_1(expected)
    delta = pruned - plain
    assert delta.abs().max() > 1e-3  # not vacuous
    assert torch.allclose(delta, expected, atol=1e-5 * max(1.0, plain.abs().max().item()), rtol=1e-4)


@pytest.mark.parametrize("fixture", ["b32", "tiny", "custom"])
def test_mean_ablation_moves_the_class_token_by_mean_minus_own_term(fixture, request):
    model, x = request.getfixturevalue(fixture)
    L = len(terms._blocks(model))
    means = ablate.head_means(model, x, layers=[L - 1])
    _check_mean_delta(model, x, means, heads=[1])
    _check_mean_delta(model, x, means, heads=[0, 1, 3])  # two runs of adjacent columns


@pytest.mark.parametrize("fixture", ["tiny", "custom"])
def test_mean_ablation_equals_editing_by_hand(fixture, request):
    model, x = request.getfixturevalue(fixture)
    L = len(terms._blocks(model))
    heads = [(0, 1), (L - 2, 0), (L - 2, 1), (L - 2, 3), (L - 1, 2)]
    means = ablate.head_means(model, x)
    with ablate.pruned(model, heads, "mean", means=means):
        got = _encode(model, x)
    expected = _by_hand(model, x, heads, means)
    zeroed = _by_hand(model, x, heads)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert (got - zeroed).abs().max() > 1e-3  # the means matter


def test_mean_ablation_from_reference_images_equals_given_means(tiny):
    model, x = tiny
    reference = _uint8(5, 48, seed=3)
    with ablate.pruned(model, ["L5.H1", "L4.H0"], "mean", reference=reference):
        a = _encode(model, x)
    means = ablate.head_means(model, reference, batch_size=2)
    with ablate.pruned(model, ["L5.H1", "L4.H0"], "mean", means=means):
        b = _encode(model, x)
    assert torch.equal(a, b)


def _brute_force_means(model, x, layers):
    """Mean head outputs from nn.MultiheadAttention's own attention weights (MHA towers) or the
    out-projection's actual input (custom towers), over all images and tokens."""
    blocks = terms._blocks(model)
    sums, hooks = {}, []
    for i in layers:
        blk = blocks[i]
        if isinstance(blk.attn, torch.nn.MultiheadAttention):

            def pre(m, a, i=i):
                h = m.ln_1(a[0])
                _, attn = m.attn(h, h, h, need_weights=True, average_attn_weights=False)
                W, H = h.shape[-1], m.attn.num_heads
                v = F.linear(h, m.attn.in_proj_weight[2 * W :], m.attn.in_proj_bias[2 * W :])
                z = torch.einsum("bhts,bshd->bhtd", attn, v.view(*v.shape[:2], H, W // H))
                sums[i] = sums.get(i, 0) + z.double().sum((0, 2))

            hooks.append(blk.register_forward_pre_hook(pre))
        else:

            def pre(m, a, i=i, H=blk.attn.num_heads):
                z = a[0].view(*a[0].shape[:2], H, -1)  # [B, T, H, dh]
                sums[i] = sums.get(i, 0) + z.double().sum((0, 1))

            hooks.append(blk.attn.out_proj.register_forward_pre_hook(pre))
    try:
        _encode(model, x)
    finally:
        for h in hooks:
            h.remove()
    T = 1 + (x.shape[-1] // getattr(model, "visual", model).patch_size[0]) ** 2
    return {i: (s / (x.shape[0] * T)).float() for i, s in sums.items()}


@pytest.mark.parametrize("fixture", ["tiny", "custom"])
def test_head_means_agree_with_brute_force(fixture, request):
    model, x = request.getfixturevalue(fixture)
    L = len(terms._blocks(model))
    layers = [0, L - 2, L - 1]
    got = ablate.head_means(model, x, layers=layers, batch_size=2)  # batches of 2 and 1 or 2
    expected = _brute_force_means(model, x, layers)
    assert got.keys() == set(layers)
    for i in layers:
        blk = terms._blocks(model)[i]
        assert got[i].shape == (blk.attn.num_heads, blk.attn.out_proj.weight.shape[1] // blk.attn.num_heads)
        assert torch.allclose(got[i], expected[i], atol=1e-5), i
    all_layers = ablate.head_means(model, x)
    assert sorted(all_layers) == list(range(L)) and torch.allclose(all_layers[L - 1], got[L - 1], atol=1e-6)


def test_sequence_first_tower_gives_the_same_means_and_pruning():
    """open_clip's batch_first=False layout (blocks see [T, B, W]) is handled."""
    tower = _tower()
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    means = ablate.head_means(tower, x)
    with ablate.pruned(tower, ["L2.H1", "L1.H3"], "mean", means=means):
        a = _encode(tower, x)
    tower.transformer.batch_first = False
    for blk in tower.transformer.resblocks:
        blk.attn.batch_first = False
    seq_means = ablate.head_means(tower, x)
    for i in means:
        assert torch.allclose(means[i], seq_means[i], atol=1e-6)
    with ablate.pruned(tower, ["L2.H1", "L1.H3"], "mean", means=seq_means):
        b = _encode(tower, x)
    assert torch.allclose(a, b, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# names, modes and errors


def test_parse_heads(b32):
    model, _ = b32
    assert ablate.parse_heads(model, ["L11.H5"]) == ablate.parse_heads(model, [(11, 5)]) == [(11, 5)]
    assert ablate.parse_heads(model, "L11.H5") == ablate.parse_heads(model, (11, 5)) == [(11, 5)]
    assert ablate.parse_heads(model, ["L11.H5", (2, 0), "L2.H0", (torch.tensor(3), 1)]) == [(2, 0), (3, 1), (11, 5)]
    assert ablate.parse_heads(model, []) == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ("L12.H0", r"'L12\.H0'.*layers 0-11"),
        ("L3.H99", r"'L3\.H99'.*heads 0-11"),
        ("X1", r"Unknown head 'X1'.*L<layer>\.H<head>"),
        ((-1, 0), r"\(-1, 0\).*layers 0-11"),
        ((1, 2, 3), r"Unknown head \(1, 2, 3\)"),
        ("l11.h5", "Unknown head"),
    ],
)
def test_bad_heads_name_the_head_and_the_range(b32, bad, match):
    model, x = b32
    with pytest.raises(ablate.PruningError, match=match):
        ablate.parse_heads(model, [bad])
    with pytest.raises(ablate.PruningError, match=match):
        with ablate.pruned(model, ["L1.H1", bad]):
            pass


def test_models_that_cannot_be_pruned():
    from open_clip.modified_resnet import ModifiedResNet

    for model, match in [
        (torch.nn.Linear(4, 4), "Linear"),
        (ModifiedResNet([1, 1, 1, 1], 16, 2, image_size=32, width=8), "ModifiedResNet"),
        (_tower(block_type="custom", scale_attn=True), "heads cannot be separated"),
    ]:
        with pytest.raises(ablate.PruningError, match=match) as e:
            ablate.parse_heads(model, ["L0.H0"])
        assert isinstance(e.value.__cause__, dc.DecompositionError)
        with pytest.raises(ablate.PruningError):
            ablate.head_means(model, torch.zeros(1, 3, 32, 32))


def test_modes(custom):
    model, x = custom
    with pytest.raises(ValueError, match="mode"):
        with ablate.pruned(model, ["L0.H0"], "random"):
            pass
    with pytest.raises(ablate.PruningError, match="means"):
        with ablate.pruned(model, ["L0.H0"], "mean"):
            pass
    plain = _encode(model, x)
    for mode in ablate.MODES:  # empty heads: a no-op, even without means
        with ablate.pruned(model, [], mode):
            assert torch.equal(_encode(model, x), plain)


@pytest.mark.parametrize("fixture", ["tiny", "b32"])
def test_an_unpruned_stream_gives_the_embeddings_of_a_full_pruned_forward_bit_exactly(fixture, request):
    """Each pruning starts at its first pruned layer from the kept unpruned stream: the embeddings are
    those of `evaluate.image_embeddings` inside `pruned`, bit for bit, in any order of first layers
    (later ones advance the stream, an earlier one restarts it), in zero and mean mode."""
    from ccs import evaluate

    model, x = request.getfixturevalue(fixture)
    L = len(model.visual.transformer.resblocks)
    images = _uint8(6, x.shape[-1], seed=3)
    stream = ablate.UnprunedStream(model, images, batch_size=4)  # two batches, the last one short
    assert ablate.UnprunedStream.supported(model, len(images))
    means = ablate.head_means(model, images)
    sets = [[f"L{L - 3}.H1", f"L{L - 1}.H2"], [f"L{L - 1}.H0"], [], [f"L{L - 4}.H0"], ["L0.H3", f"L{L - 2}.H5"]]
    for mode in ("zero", "mean"):
        for heads in sets:
            with ablate.pruned(model, heads, mode, means=means):
                plain = evaluate.image_embeddings(model, images, batch_size=4)
                assert torch.equal(stream.embeddings(heads), plain), (mode, heads)
        assert stream.layer == 0  # the last pruning started at layer 0
    # in the order of first layers, a block runs once per batch for the stream, once for each pruning after it
    blocks = model.visual.transformer.resblocks
    calls = [0] * L
    hooks = [b.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1)) for k, b in enumerate(blocks)]
    try:
        stream, firsts = ablate.UnprunedStream(model, images, batch_size=4), []
        for heads in sorted(sets, key=lambda h: ablate.first_layer(model, h)):
            with ablate.pruned(model, heads):
                stream.embeddings(heads)
            firsts.append(ablate.first_layer(model, heads))
    finally:
        for h in hooks:
            h.remove()
    assert calls == [2 * (any(f > k for f in firsts) + sum(f <= k for f in firsts)) for k in range(L)]


def test_the_stream_is_kept_only_for_towers_it_reproduces_and_within_its_budget(tiny):
    model, _ = tiny
    tokens, width = model.visual.positional_embedding.shape
    assert ablate.UnprunedStream.supported(model, 10, budget=10 * tokens * width * 4)
    assert not ablate.UnprunedStream.supported(model, 11, budget=10 * tokens * width * 4)
    assert not ablate.UnprunedStream.supported(model.visual, 10)  # a bare tower has no encode_image
    assert ablate.first_layer(model, ["L5.H0", "L3.H2"]) == 3 and ablate.first_layer(model, []) == 6
