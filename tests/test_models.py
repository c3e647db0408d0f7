"""The model registry: names, open_clip mapping, loading, and the offline errors."""

import time

import huggingface_hub.constants
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from ccs import models
from ccs.cli import app

# The paper's models and the open_clip (name, tag) that reproduce them. OpenAI weights need the
# -quickgelu configs in open_clip 3.x, or accuracy silently drops.
PAPER = {
    "ViT-B-32-OpenAI": ("ViT-B-32-quickgelu", "openai"),
    "ViT-B-32-DataComp": ("ViT-B-32", "datacomp_m_s128m_b4k"),
    "ViT-B-16-OpenAI": ("ViT-B-16-quickgelu", "openai"),
    "ViT-B-16-LAION": ("ViT-B-16", "laion2b_s34b_b88k"),
    "ViT-L-14-OpenAI": ("ViT-L-14-quickgelu", "openai"),
    "ViT-L-14-LAION": ("ViT-L-14", "laion2b_s32b_b82k"),
}


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("CCS_WEIGHTS", raising=False)
    return tmp_path / "hub"


@pytest.mark.parametrize("name", PAPER)
def test_paper_models_map_to_open_clip(name):
    s = models.spec(name)
    assert (s.open_clip, s.pretrained) == PAPER[name]
    assert (s.open_clip, s.pretrained) in open_clip.list_pretrained()
    quick = open_clip.get_model_config(s.open_clip).get("quick_gelu", False)
    assert quick == name.endswith("OpenAI")
    assert s.analysed_layers == tuple(range(s.layers - 4, s.layers))


def test_unknown_model_lists_known_ones():
    with pytest.raises(models.UnknownModelError) as err:
        models.spec("ViT-B-32")
    assert "ViT-B-32-OpenAI" in str(err.value) and "ccs-tiny" in str(err.value)


def test_missing_weights_fail_fast_and_say_what_to_do(empty_hub):
    start = time.perf_counter()
    with pytest.raises(models.WeightsNotFoundError) as err:
        models.load("ViT-B-16-LAION")
    assert time.perf_counter() - start < 5  # no network retries
    msg = str(err.value)
    assert "ViT-B-16-LAION" in msg and "ccs fetch ViT-B-16-LAION" in msg
    assert "laion/CLIP-ViT-B-16-laion2B-s34B-b88K" in msg and "CCS_WEIGHTS" in msg


def test_weights_found_in_hugging_face_cache(empty_hub):
    # the layout huggingface_hub writes: refs/main -> snapshots/<commit>/<file>
    repo = empty_hub / "models--timm--vit_base_patch16_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"weights")
    assert models.weights_path("ViT-B-16-OpenAI") == snapshot / "open_clip_pytorch_model.bin"


def test_paper_model_loads_from_ccs_weights(tmp_path, monkeypatch, empty_hub):
    """The real loading path end to end, with a checkpoint written here instead of downloaded."""
    torch.manual_seed(0)
    reference = open_clip.create_model("ViT-B-32-quickgelu")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, tmp_path / "ViT-B-32-OpenAI.safetensors")
    monkeypatch.setenv("CCS_WEIGHTS", str(tmp_path))
    model, preprocess, tokenizer = models.load("ViT-B-32-OpenAI")
    for (k, a), b in zip(reference.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not model.training
    assert model.visual.preprocess_cfg["mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert tokenizer(["a photo"]).shape == (1, 77)
    assert preprocess(Image.new("RGB", (300, 200))).shape == (3, 224, 224)


def test_tensor_preprocess_matches_pil_pipeline():
    model, preprocess, _ = models.load(models.TINY, untrained=True)
    size = model.visual.preprocess_cfg["size"][0]
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
    pil = Image.fromarray(image[0].permute(1, 2, 0).numpy())
    torch.testing.assert_close(models.tensor_preprocess(model)(image)[0], preprocess(pil), atol=1e-6, rtol=0)


def test_cli_lists_the_paper_models():
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in [models.TINY, *PAPER]:
        assert name in result.output


def test_parameter_counts_cover_every_parameter():
    model = models.load(models.TINY, untrained=True).model
    assert sum(models.parameter_counts(model).values()) == sum(p.numel() for p in model.parameters())
    assert models.architecture(models.TINY, model)["heads per layer"] == models.spec(models.TINY).heads


def test_loading_a_zoo_model_puts_the_process_in_the_world_it_learned(monkeypatch):
    from dataclasses import replace

    from ccs import world

    base = models.spec("ccs-tiny")
    rich = replace(base, name="ccs-rich-test", world="rich")
    monkeypatch.setattr(models, "registry", lambda: {**{base.name: base}, rich.name: rich})
    try:
        models.load("ccs-rich-test", untrained=True)
        assert world.current() == "rich" and len(world.SHAPES) == 16
        models.load("ccs-tiny", untrained=True)
        assert world.current() == "base" and len(world.SHAPES) == 8
    finally:
        world.use("base")
