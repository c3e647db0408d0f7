"""The model registry: the paper's six CLIP models and the project's own tiny one, loaded by name.

Every function of the library takes a model name from this registry. The paper's models load
through open_clip from weights already on disk; nothing here downloads behind your back (that is
`ccs fetch NAME`), so an offline machine fails at once with a message that says what to do, instead
of retrying a hub for a minute. Nothing falls back from a paper model to the tiny one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import yaml

if TYPE_CHECKING:  # torch is imported where a model is built or used: naming one (`ccs run`) needs none
    import torch

TINY = "ccs-tiny"
PACKAGE = resources.files("ccs")
CONFIG_DIR = Path(str(PACKAGE / "model_configs"))
WEIGHTS_DIR = Path(str(PACKAGE / "weights"))
TINY_MEAN = TINY_STD = (0.5, 0.5, 0.5)


class UnknownModelError(KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class WeightsNotFoundError(FileNotFoundError):
    """A registered model whose weights are not on this machine."""


class WeightsDamagedError(OSError):
    """A model's weights file is on disk but cannot be loaded (truncated, or not a checkpoint)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the book needs to know about a model before loading it."""

    name: str  # the paper's name (or ccs-tiny)
    open_clip: str  # open_clip model (config) name
    pretrained: str | None  # open_clip pretrained tag; None for the project's own weights
    layers: int
    heads: int
    analysed_layers: tuple[int, ...]
    world: str = "base"  # the concept world's variant a zoo model was trained in (ccs.world.VARIANTS)

    @property
    def embedded(self) -> bool:
        """True for the model that ships inside the package and runs offline."""
        return self.pretrained is None


@cache
def paper() -> dict:
    """The paper's published facts (models, head lists, result tables) from the packaged paper.yaml."""
    return yaml.safe_load((PACKAGE / "data" / "paper.yaml").read_text())


@cache
def zoo() -> dict[str, dict]:
    """The project's own concept-world models (the packaged zoo.yaml): name -> config, seed, about."""
    return yaml.safe_load((PACKAGE / "data" / "zoo.yaml").read_text())


@cache
def registry() -> dict[str, ModelSpec]:
    """All known models by name: the project's tiny models first (ccs-tiny, the default, leads),
    then the paper's six. (Read from the packaged files alone: naming a model does not import
    open_clip, which takes seconds; `load` registers the configs with it.)"""
    specs = {}
    for name, z in zoo().items():
        cfg = json.loads((CONFIG_DIR / f"{z['config']}.json").read_text())["vision_cfg"]
        layers = cfg["layers"]
        specs[name] = ModelSpec(
            name,
            z["config"],
            None,
            layers,
            cfg["width"] // cfg["head_width"],
            tuple(range(max(0, layers - 4), layers)),
            z.get("world", "base"),
        )
    for name, m in paper()["models"].items():
        specs[name] = ModelSpec(name, m["open_clip"], m["pretrained"], m["layers"], m["heads"], tuple(m["analysed_layers"]))
    return specs


def names() -> list[str]:
    return list(registry())


def spec(name: str) -> ModelSpec:
    """The registry entry for `name`; an unknown name raises an error listing the known ones."""
    try:
        return registry()[name]
    except KeyError:
        raise UnknownModelError(
            f"Unknown model {name!r}. Known models: {', '.join(names())}. Run `ccs models` for details."
        ) from None


@cache
def _register_configs() -> None:
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)


def _hub_file(s: ModelSpec) -> tuple[str, list[str]] | None:
    """The Hugging Face repository and candidate file names of a paper model's weights."""
    from open_clip.pretrained import get_pretrained_cfg

    hub = get_pretrained_cfg(s.open_clip, s.pretrained).get("hf_hub", "")
    if not hub:
        return None
    repo, filename = os.path.split(hub)
    if filename:
        return repo, [filename]
    return repo, ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]


def weights_path(name: str) -> Path:
    """Where the weights of `name` lie on this machine, or a clear error saying how to get them.

    Looked up, in order: the packaged weights (ccs-tiny), ``$CCS_WEIGHTS/<name>.{safetensors,bin,pt}``,
    and the Hugging Face cache that open_clip downloads into. Never touches the network.
    """
    s = spec(name)
    if s.embedded:
        path = WEIGHTS_DIR / f"{name}.safetensors"
        if path.is_file():
            return path
        raise WeightsNotFoundError(
            f"The trained weights of {name} are missing ({path}). Trained models ship with the repository "
            f"(restore them with `git checkout -- lib/ccs/weights`); train this one with "
            f"`make train-tiny MODEL={name}`."
        )
    searched = []
    if os.environ.get("CCS_WEIGHTS"):
        for ext in ("safetensors", "bin", "pt"):
            path = Path(os.environ["CCS_WEIGHTS"]).expanduser() / f"{name}.{ext}"
            searched.append(str(path))
            if path.is_file():
                return path
    hub = _hub_file(s)
    if hub:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.constants import HF_HUB_CACHE

        repo, files = hub
        for filename in files:
            found = try_to_load_from_cache(repo, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        searched.append(f"{HF_HUB_CACHE} (repository {repo})")
    raise WeightsNotFoundError(
        f"No weights for {name} (open_clip {s.open_clip!r}, pretrained={s.pretrained!r}) on this "
        f"machine. Looked in: {'; '.join(searched)}. On a machine with internet run "
        f"`ccs fetch {name}` (it downloads into the Hugging Face cache), or put the checkpoint at "
        f"$CCS_WEIGHTS/{name}.safetensors."
    )


def fetch(name: str, timeout: float = 3.0) -> Path:
    """Download a paper model's weights into the Hugging Face cache (needs the network).

    Weights already in the cache are returned without touching the network. Otherwise the hub
    (``HF_ENDPOINT``, or the HTTPS proxy that reaches it) must answer a connection within `timeout`
    seconds, and ``HF_HUB_OFFLINE`` must be unset: an offline machine fails at once with a
    ConnectionError saying what to do, instead of retrying the hub for a minute.
    """
    import socket
    import threading
    import urllib.parse
    import urllib.request

    from huggingface_hub import constants, try_to_load_from_cache
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    s = spec(name)
    if s.embedded:
        return weights_path(name)
    hub = _hub_file(s)
    for filename in hub[1] if hub else []:
        found = try_to_load_from_cache(hub[0], filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    todo = (
        f"run `ccs fetch {name}` on a machine with internet (it downloads into the Hugging Face "
        f"cache, which you can copy here), or put the checkpoint at $CCS_WEIGHTS/{name}.safetensors."
    )
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConnectionError(f"HF_HUB_OFFLINE is set, so {name} cannot be downloaded: unset it, or {todo}")
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or constants.ENDPOINT)
    host = endpoint.hostname or "huggingface.co"
    target = (host, endpoint.port or (443 if endpoint.scheme == "https" else 80))
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    proxy = proxy if proxy and not urllib.request.proxy_bypass(host) else None
    if proxy:
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        target = (p.hostname, p.port or (443 if p.scheme == "https" else 80))
    outcome: list = []

    def probe():  # in a thread, so that a slow name lookup cannot hold us past the timeout either
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if not outcome or outcome[0] is not None:
        why = outcome[0] if outcome else f"no answer in {timeout:g} s"
        via = f" through the proxy {target[0]}:{target[1]}" if proxy else f" on port {target[1]}"
        raise ConnectionError(f"cannot reach {host}{via}: {why}. Offline? To get {name}, {todo}")
    path = download_pretrained(get_pretrained_cfg(s.open_clip, s.pretrained))
    return Path(path)


def weights_problem(path: Path) -> str | None:
    """Why the checkpoint at `path` cannot be loaded, read from its header and size without loading it
    (a truncated download or copy, a file that is not the format its name says), or None.

    A safetensors file must hold the header its first 8 bytes announce and every byte the header
    places; a zip checkpoint (.bin, .pt) must end with its central directory."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if path.suffix == ".safetensors":
                if len(head) < 8:
                    return f"{size} bytes, too short for a safetensors file"
                n = int.from_bytes(head, "little")
                if n > size - 8:
                    return f"truncated: its header announces {n} bytes of metadata, the file holds {size} bytes"
                try:
                    meta = json.loads(f.read(n))
                except ValueError:
                    return "its header is not the JSON a safetensors file starts with"
                ends = [
                    v["data_offsets"][1]
                    for k, v in meta.items()
                    if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets") or ()) == 2
                ]
                needed = 8 + n + max(ends, default=0)
                if not isinstance(meta, dict) or needed > size:
                    return f"truncated: {size} bytes of the {needed} its header describes"
                return None
            if head[:2] == b"PK":
                import zipfile

                if not zipfile.is_zipfile(path):
                    return f"truncated: a zip checkpoint of {size} bytes without its end (central directory)"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    return None  # a legacy torch pickle: only loading it tells


def check_weights(name: str) -> Path:
    """`weights_path`, and a clear error (WeightsDamagedError, with the path and what to do) when the
    file there cannot be loaded: before a kernel starts, not as a bare SafetensorError inside it."""
    path = weights_path(name)
    why = weights_problem(path)
    if why:
        if spec(name).embedded:
            fix = (
                f"restore it with `git checkout -- {path.name}` in lib/ccs/weights, or retrain it "
                f"(`make train-tiny MODEL={name}`)"
            )
        else:
            fix = f"delete it and run `ccs fetch {name}`, or put a whole checkpoint at $CCS_WEIGHTS/{name}.safetensors"
        raise WeightsDamagedError(f"The weights of {name} at {path} are damaged ({why}): {fix}.")
    return path


class Loaded(NamedTuple):
    """A loaded model; unpacks as ``model, preprocess, tokenizer``."""

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable


def load(name: str, *, device: str | torch.device = "cpu", untrained: bool = False) -> Loaded:
    """Load a registered model in eval mode, with its PIL preprocessing and its tokenizer.

    ``untrained=True`` builds the same architecture with random weights (for tests of the
    mathematics, which need no download); results from such a model must be labelled untrained.
    """
    import open_clip

    s = spec(name)
    if s.embedded:  # its images, tasks, captions and pool lines are those of the world it learned
        from ccs import world

        world.use(s.world)
    _register_configs()
    kwargs = {"image_mean": TINY_MEAN, "image_std": TINY_STD} if s.embedded else {}
    if not s.embedded and not untrained:
        from open_clip.pretrained import get_pretrained_cfg

        pcfg = get_pretrained_cfg(s.open_clip, s.pretrained)
        kwargs = {
            "image_mean": pcfg["mean"],
            "image_std": pcfg["std"],
            "image_interpolation": pcfg.get("interpolation"),
            "image_resize_mode": pcfg.get("resize_mode"),
        }
    pretrained = None if untrained else str(check_weights(name))
    model, _, preprocess = open_clip.create_model_and_transforms(s.open_clip, pretrained=pretrained, device=device, **kwargs)
    model.eval()
    return Loaded(model, preprocess, open_clip.get_tokenizer(s.open_clip))


def banner(name: str, weights: str = "trained") -> str:
    """The line a page opens with: which model, and whether its weights are real."""
    s = spec(name)
    if weights == "random":
        return (
            f"{name} ({s.open_clip}) with RANDOM WEIGHTS: the same architecture untrained, to test "
            "that the path runs; its numbers say nothing about the model"
        )
    return f"{name} ({s.open_clip}) with its {'packaged' if s.embedded else s.pretrained} weights"


def tensor_preprocess(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Preprocessing for batches of uint8 image tensors [N, 3, H, W] (the concept world's format).

    Resizes to the model's input size when needed and normalises with the model's mean and std,
    as open_clip's PIL pipeline does, but on whole batches.
    """
    import torch

    cfg = model.visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        x = images.float().div_(255)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 1)
        return (x - mean.to(x.device)) / std.to(x.device)

    return preprocess


def describe(name: str) -> dict:
    """A one-row summary of a registered model (for `ccs models` and the model card)."""
    s = spec(name)
    try:
        path = weights_path(name)
        weights, state = str(path), "damaged" if weights_problem(path) else "on disk"
    except WeightsNotFoundError:
        weights, state = "", "missing"
    return {
        "name": s.name,
        "open_clip": s.open_clip,
        "pretrained": s.pretrained or "(packaged)",
        "layers": s.layers,
        "heads": s.heads,
        "analysed_layers": f"{s.analysed_layers[0]}-{s.analysed_layers[-1]}",
        "weights": state,
        "path": weights,
    }


def architecture(name: str, model: torch.nn.Module) -> dict:
    """The numbers a reader needs about a loaded model (for the model card)."""
    visual, cfg = model.visual, model.visual.preprocess_cfg
    heads = visual.transformer.resblocks[0].attn.num_heads
    return {
        "model": name,
        "open_clip architecture": spec(name).open_clip,
        "image size": f"{cfg['size'][0]} x {cfg['size'][1]}",
        "patch size": visual.patch_size[0],
        "vision layers": len(visual.transformer.resblocks),
        "heads per layer": heads,
        "vision width": visual.transformer.width,
        "head width": visual.transformer.width // heads,
        "embedding dim": visual.output_dim,
        "text context": model.context_length,
        "analysed layers": ", ".join(map(str, spec(name).analysed_layers)),
        "image mean": tuple(round(m, 3) for m in cfg["mean"]),
        "image std": tuple(round(s, 3) for s in cfg["std"]),
    }


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per part of a CLIP: where the weights (and the heads) are."""
    import torch

    def n(*modules) -> int:
        return sum(p.numel() for m in modules for p in (m.parameters() if isinstance(m, torch.nn.Module) else [m]))

    v, blocks = model.visual, model.visual.transformer.resblocks
    return {
        "vision: patch + position embedding": n(v.conv1, v.positional_embedding, v.class_embedding),
        "vision: attention": n(*(b.attn for b in blocks)),
        "vision: MLP": n(*(b.mlp for b in blocks)),
        "vision: norms + projection": n(v.ln_pre, v.ln_post, v.proj, *(b.ln_1 for b in blocks), *(b.ln_2 for b in blocks)),
        "text: token embedding": n(model.token_embedding),
        "text: transformer": n(model.transformer),
        "text: norms + projection": n(model.ln_final, model.text_projection, model.positional_embedding),
        "logit scale": n(model.logit_scale),
    }
