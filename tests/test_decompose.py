"""The decomposition identity: all terms sum to the normalised embedding, on real architectures."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from ccs import decompose as dc
from ccs import models
from ccs.decompose import streaming, terms


pytestmark = pytest.mark.usefixtures("one_thread")


def _perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random biases and norm parameters (a fresh model has zeros and ones there, which would hide
    mistakes in the bias shares and the linearised norm)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or "ln_" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


def _image_tower(name: str) -> torch.nn.Module:
    """The random-init image tower of a registered model, built from its open_clip config (the
    text tower plays no part in the image embedding, and building it would double the time)."""
    import open_clip
    from open_clip.model import _build_vision_tower

    models._register_configs()
    cfg = open_clip.get_model_config(models.spec(name).open_clip)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], cfg.get("quick_gelu", False))


@pytest.fixture(scope="module", params=["ccs-tiny", "ViT-B-32-OpenAI", "ViT-B-16-LAION"])
def case(request):
    """A perturbed random-init tower, 2 images, their embeddings and the last block's input."""
    torch.manual_seed(0)
    tower = _perturb(_image_tower(request.param)).eval()
    if request.param == "ViT-B-32-OpenAI":  # the OpenAI models use QuickGELU
        assert type(tower.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    size = tower.image_size[0]
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    seen = {}
    hook = tower.transformer.resblocks[-1].register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    with torch.no_grad():
        embedding = tower(x)
    hook.remove()
    return tower, x, embedding, seen["x"]


@pytest.mark.parametrize("convention", dc.CONVENTIONS)
def test_terms_sum_to_normalised_embedding(case, convention):
    model, x, embedding, _ = case
    c = dc.components(model, x, layers=4, convention=convention)
    assert c.heads.shape[1:3] == (4, model.transformer.resblocks[0].attn.num_heads)
    assert (c.total() - F.normalize(embedding, dim=-1)).abs().max().item() <= 1e-4
    assert torch.allclose(c.norms, embedding.norm(dim=-1), rtol=1e-4)


@torch.no_grad()
def test_head_terms_match_multihead_attention_weights(case):
    """Each head's class-token term, computed independently from nn.MultiheadAttention's own
    per-head attention weights."""
    model, _, _, block_input = case
    blk = model.transformer.resblocks[-1]
    h = blk.ln_1(block_input)
    _, attn = blk.attn(h, h, h, need_weights=True, average_attn_weights=False)  # [B,H,T,T]
    W = h.shape[-1]
    H = blk.attn.num_heads
    v = F.linear(h, blk.attn.in_proj_weight[2 * W :], blk.attn.in_proj_bias[2 * W :])
    v = v.view(*v.shape[:2], H, W // H)
    z = torch.einsum("bht,bthd->bhd", attn[:, :, 0], v)
    expected = terms._head_terms(blk, z)
    got = terms._head_terms(blk, terms._attention(blk, block_input, cls_only=True)[1])
    assert torch.allclose(got, expected, atol=1e-5)


def _tower(**kw):
    torch.manual_seed(0)
    kw = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 3, "heads": 4, "mlp_ratio": 2, "output_dim": 16, **kw}
    return _perturb(VisionTransformer(**kw).eval())


@pytest.mark.parametrize(
    "kw",
    [
        {"ls_init_value": 0.5},
        {"block_type": "custom"},
        {"block_type": "custom", "qk_norm": True, "scale_heads": True},
        {"final_ln_after_pool": True},
        {"no_ln_pre": True},
    ],
)
def test_identity_on_architecture_variants(kw):
    tower = _tower(**kw)
    x = torch.randn(3, 3, 16, 16)
    for convention in dc.CONVENTIONS:
        c = dc.components(tower, x, layers=2, convention=convention)
        assert (c.total() - F.normalize(tower(x), dim=-1)).abs().max() <= 1e-5


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"attentional_pool": True}, "attentional pooling"),
        ({"pool_type": "avg"}, "pool_type"),
        ({"block_type": "custom", "scale_attn": True}, "heads"),
    ],
)
def test_clear_error_for_what_cannot_be_decomposed(kw, match):
    with pytest.raises(dc.DecompositionError, match=match):
        dc.components(_tower(**kw), torch.randn(1, 3, 16, 16))


def test_clear_error_for_a_non_vit():
    class Model(torch.nn.Module):
        visual = torch.nn.Conv2d(3, 8, 3)

    with pytest.raises(dc.DecompositionError, match="only open_clip VisionTransformer"):
        dc.check(Model())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    return _perturb(models.load("ccs-tiny", untrained=True).model)


def _uint8(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 48, 48), dtype=torch.uint8, generator=g)


def test_streaming_equals_one_batch(tiny, tmp_path):
    images = _uint8(10)
    d = dc.stream(tiny, images, tmp_path / "a", layers=4, batch_size=3, progress=False)
    one = dc.components(tiny, models.tensor_preprocess(tiny)(images), layers=4)
    spec = models.spec("ccs-tiny")
    assert d.heads.shape == (10, 4, spec.heads, tiny.visual.proj.shape[1])
    assert d.heads.dtype == np.float16 and d.layers == list(spec.analysed_layers)
    assert np.abs(d.heads - one.heads.numpy()).max() < 2e-3  # fp16 storage
    whole = dc.stream(tiny, images, tmp_path / "b", layers=4, batch_size=10, progress=False)
    for name in dc.ARRAYS:  # equal up to fp16 rounding (BLAS sums in another order per batch size)
        np.testing.assert_allclose(d.array(name), whole.array(name), rtol=2e-3, atol=1e-5)
    with torch.no_grad():
        ref = tiny.encode_image(models.tensor_preprocess(tiny)(images), normalize=True)
    assert np.abs(d.embeddings() - ref.numpy()).max() < 1e-2


class Interrupt(Exception):
    pass


class Flaky(torch.utils.data.Dataset):
    """Images that fail once at index `fail_at` (a simulated interruption)."""

    def __init__(self, images, fail_at):
        self.images, self.fail_at, self.read = images, fail_at, []

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.read.append(i)
        if i == self.fail_at:
            self.fail_at = None
            raise Interrupt
        return self.images[i], 0


def test_resume_after_interruption(tiny, tmp_path):
    images = _uint8(10, seed=1)
    flaky = Flaky(images, fail_at=7)
    with pytest.raises(Interrupt):
        dc.stream(tiny, flaky, tmp_path / "r", batch_size=3, progress=False, key="k")
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["done"] == 6
    flaky.read.clear()
    resumed = dc.stream(tiny, flaky, tmp_path / "r", batch_size=3, progress=False, key="k")
    assert resumed.meta["done"] == 10 and flaky.read == [6, 7, 8, 9]  # only what was missing
    ref = dc.stream(tiny, images, tmp_path / "s", batch_size=3, progress=False)
    for name in dc.ARRAYS:
        np.testing.assert_array_equal(resumed.array(name), ref.array(name))
    # another key starts afresh
    again = dc.stream(tiny, images[:4], tmp_path / "r", batch_size=4, progress=False, key="other")
    assert again.heads.shape[0] == 4


def test_a_cache_folder_is_built_by_one_process_at_a_time(tiny, tmp_path, monkeypatch):
    """Pages run side by side must not write one decomposition folder at once: `cached` builds it
    holding the folder's lock, and another process that wants the lock waits for it."""
    import fcntl
    import subprocess
    import sys

    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    held = []
    real = dc.stream

    def stream(model, images, out, **kw):  # is the lock taken while the folder is written?
        with open(out.parent / f".{out.name}.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
        return real(model, images, out, **kw)

    monkeypatch.setattr(streaming, "stream", stream)  # where `cached` looks it up
    dc.cached(tiny, "ccs-tiny", _uint8(2, seed=5), progress=False)
    assert held == [True]

    folder = tmp_path / "decompose" / "m" / "k"
    code = (
        "from pathlib import Path; from ccs import decompose\n"
        "print('ready', flush=True)\n"
        f"with decompose.exclusive(Path({str(folder)!r})):\n    print('in', flush=True)\n"
    )
    with dc.exclusive(folder):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        assert proc.poll() is None  # still waiting for the lock
    assert proc.communicate(timeout=60)[0].strip() == "in"


def test_cached_reuses_the_stored_arrays(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_CACHE", str(tmp_path))
    images = _uint8(4, seed=2)
    a = dc.cached(tiny, "ccs-tiny", images, progress=False)
    mtime = (a.path / "heads.npy").stat().st_mtime_ns
    b = dc.cached(tiny, "ccs-tiny", images, progress=False)
    assert b.path == a.path and (b.path / "heads.npy").stat().st_mtime_ns == mtime
    assert dc.cached(tiny, "ccs-tiny", images[:3], progress=False).path != a.path
