"""Training the tiny CLIP (`ccs-tiny`) on the concept world.

open_clip's own model (from the registered `ccs-tiny` config) and its ClipLoss; AdamW with linear
warm-up and a cosine schedule; the logit scale clamped to ln(100) after every step as open_clip
does. Batches come from `world.train_batch(batch_size, step, seed)`, so a batch depends only on its
step and a run resumes exactly from its last checkpoint (``last.pt`` in the run folder, written
atomically every few steps). Zero-shot accuracy per concept is measured every `eval_every` steps on
fixed fresh test images, and the best checkpoint (mean accuracy) is kept as ``best.pt``.
`export` writes the best weights (fp16 safetensors) and the training record into the package.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ccs import evaluate, models, world

EVAL_SEED = 90_001  # the fixed evaluation images seen during training (eval-tiny uses other seeds)


# The sibling mix: groups of images one attribute apart, spent mostly on the concepts that pixels
# make least salient (colour, scene, size and count are learned from the independent images alone).
# The second run was steered by hand through several mixes (its notes); position rose only while it
# had about a third of the groups. Since issue #13 one mix holds from the first step.
SIBLING_MIX = {"shape": 0.37, "position": 0.28, "texture": 0.2, "size": 0.12, "count": 0.01, "colour": 0.01, "scene": 0.01}


@dataclass
class TrainConfig:
    pairs: int = 3_000_000  # image-caption pairs to train on (steps = pairs // batch_size)
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 300  # steps
    seed: int = 0
    eval_every: int = 100  # steps
    eval_n: int = 400
    save_every: int = 100  # steps
    threads: int = 1
    # autocast precision: "bf16" (CPUs with native bf16 such as AVX512-BF16/AMX, and GPUs), "fp32",
    # or "auto" (bf16 where supported): bf16 halves the step on such CPUs at the same accuracy
    precision: str = "auto"
    # a process rendering the next batches while this one trains (1), or rendering inline (0): on 2
    # CPU cores the worker only competes with the 2 training threads (1,290 pairs/s against 1,650
    # inline, benchmarks/train.py); on a GPU it hides the rendering
    loader_workers: int = 0
    sibling_frac: float = 0.75  # share of a batch in groups of images one attribute apart
    sibling_group: int = 8  # images per group (2: pairs)
    position_share: float = 0.5
    # {concept: weight} of the sibling differences; None: position in `position_share` of them
    sibling_weights: dict | None = field(default_factory=lambda: dict(SIBLING_MIX))
    model: str = models.TINY
    # the open_clip config (lib/ccs/model_configs/) when it is not `model`'s registered one (the
    # regime study trains configurations that are not in the zoo), and the world variant (world.use)
    config: str | None = None
    world: str = "base"
    single: float = 0.15  # share of single-concept captions (a zero-shot prompt's form)
    # input normalisation used in training; `export` folds it into the weights so that the shipped
    # model expects the package's convention (models.TINY_MEAN / TINY_STD) whatever was used here
    image_mean: tuple = models.TINY_MEAN
    image_std: tuple = models.TINY_STD

    @property
    def steps(self) -> int:
        return max(1, self.pairs // self.batch_size)


@dataclass
class State:
    step: int = 0
    wall: float = 0.0  # seconds spent training, summed over resumptions
    losses: list = field(default_factory=list)  # [step, loss, logit_scale]
    evals: list = field(default_factory=list)  # {"step":, "zero_shot": {...}, "mean":, "position_cos":}
    best: float = -1.0
    best_step: int = -1


def open_clip_config(cfg) -> str:
    """The open_clip config a run trains: its own `config`, else its registered model's."""
    cfg = cfg if isinstance(cfg, dict) else asdict(cfg)
    return cfg.get("config") or models.spec(cfg["model"]).open_clip


def build_model(
    name: str = models.TINY, seed: int = 0, mean=models.TINY_MEAN, std=models.TINY_STD, config: str | None = None
) -> torch.nn.Module:
    """A freshly initialised open_clip model of the registered model `name`'s config, or of the
    open_clip config `config` (same seed, same init)."""
    import open_clip

    models._register_configs()
    torch.manual_seed(seed)
    return open_clip.create_model(
        config or models.spec(name).open_clip, pretrained=None, force_preprocess_cfg={"mean": tuple(mean), "std": tuple(std)}
    )


def fold_normalisation(state: dict, mean, std, new_mean=models.TINY_MEAN, new_std=models.TINY_STD) -> dict:
    """Rewrite ViT weights trained on inputs normalised with (mean, std) so that they give the same
    outputs on inputs normalised with (new_mean, new_std): the per-channel scale goes into the
    (bias-free) patch-embedding conv, the offset into the patch tokens' positional embedding."""
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    m2, s2 = torch.tensor(new_mean).view(1, 3, 1, 1), torch.tensor(new_std).view(1, 3, 1, 1)
    state = dict(state)
    w = state["visual.conv1.weight"].float()  # [width, 3, p, p]
    # old input = new input * s2/s + (m2 - m)/s
    state["visual.conv1.weight"] = w * (s2 / s)
    offset = (w * ((m2 - m) / s)).sum((1, 2, 3))  # conv of the constant image, per output channel
    pos = state["visual.positional_embedding"].float().clone()
    pos[1:] += offset  # patch tokens only; the class token never sees the image
    state["visual.positional_embedding"] = pos
    return state


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, t)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    # no weight decay on gains, biases, embeddings' scale and the logit scale (as open_clip's main)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )


def _save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never corrupts the last checkpoint


def eval_concepts(model, tokenizer, batch) -> dict:
    """Per-concept zero-shot accuracy on a world batch, plus the mean cosine between the position
    prompts' classifier rows (an early warning: it must fall during training, not rise to 1)."""
    model.eval()
    tasks = world.tasks()
    acc = evaluate.zero_shot_report(model, tokenizer, batch, tasks)
    clf = evaluate.zero_shot_classifier(model, tokenizer, tasks["position"].classnames, tasks["position"].templates)
    cos = clf @ clf.T
    k = len(cos)
    model.train()
    return {"zero_shot": acc, "mean": sum(acc.values()) / len(acc), "position_cos": float((cos.sum() - k) / (k * k - k))}


PRECISIONS = ("auto", "bf16", "fp32")


def resolve_precision(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype of a run: bf16 where the hardware has it natively, else None (fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: use {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}")
    if precision == "fp32":
        return None
    native = (
        torch.cuda.is_bf16_supported()
        if device == "cuda"
        else torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    if precision == "auto" and not native:
        return None
    return torch.bfloat16


def _return_big_blocks_to_the_system() -> None:
    """Serve every allocation of 64 KiB or more (a batch of images is ~1.8 MB) by its own mmap. By
    default glibc raises that threshold after the first frees and serves batches from the heap,
    which fragments: the rendering process grew by ~2.4 MB a step, enough to exhaust 24 GiB
    before the end of a run; with the threshold fixed it grows by a tenth of that."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c")).mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to tune
        pass


class Batches(torch.utils.data.IterableDataset):
    """The training batches of steps [start, end) as (step, uint8 images, token ids). A batch
    depends only on its step, so a worker process can render ahead and a resumed run sees the
    same data; captions repeat a lot, so their token ids are cached."""

    def __init__(self, cfg: TrainConfig, start: int, end: int):
        self.cfg, self.start, self.end = cfg, start, end

    def __iter__(self):
        import open_clip

        # with k worker processes, worker i renders steps start+i, start+i+k, ...; the DataLoader
        # takes one batch from each worker in turn, so the steps still arrive in order
        info = torch.utils.data.get_worker_info()
        if info is not None:  # not inline: the training's own tensors would all go through mmap
            _return_big_blocks_to_the_system()
        models._register_configs()
        c = self.cfg
        world.use(c.world)  # a worker process starts in the base world
        tokenizer, ids = open_clip.get_tokenizer(open_clip_config(c)), {}
        first, stride = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + first, self.end, stride):
            b = world.train_batch(
                c.batch_size, step, c.seed, c.sibling_frac, c.position_share, c.sibling_weights, c.sibling_group, c.single
            )
            new = [t for t in dict.fromkeys(b.captions) if t not in ids]
            if new:
                ids.update(zip(new, tokenizer(new)))
            yield step, b.images, torch.stack([ids[t] for t in b.captions])


def batches(cfg: TrainConfig, start: int, end: int):
    """Iterate `Batches`, rendered in `cfg.loader_workers` background processes (none: inline)."""
    ds = Batches(cfg, start, end)
    if cfg.loader_workers == 0:
        return iter(ds)
    return iter(
        torch.utils.data.DataLoader(ds, batch_size=None, num_workers=cfg.loader_workers, prefetch_factor=4, in_order=True)
    )


def make_optimizers(model: torch.nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """AdamW for the model, and a lazy (sparse) Adam for the token embedding: the world's captions
    use a few hundred of its 49,408 rows, and a dense update of all of them cost a tenth of a step."""
    emb = model.token_embedding
    emb.sparse = True
    emb.weight.requires_grad_(False)  # kept out of AdamW's groups
    dense = make_optimizer(model, cfg)
    emb.weight.requires_grad_(True)
    sparse = torch.optim.SparseAdam([emb.weight], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    return [dense, sparse]


def train(
    run_dir: str | Path,
    cfg: TrainConfig | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    device: str | None = None,
) -> State:
    """Train (or resume) a run in `run_dir`; stop after cfg.steps, or after `max_steps` more steps."""
    import open_clip
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    last = run_dir / "last.pt"
    if cfg is None:  # resuming: the run's own config
        cfg = TrainConfig(**json.loads((run_dir / "config.json").read_text()))
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    torch.set_num_threads(cfg.threads)
    world.use(cfg.world)
    amp = resolve_precision(cfg.precision, device)
    model = build_model(cfg.model, cfg.seed, cfg.image_mean, cfg.image_std, cfg.config).to(device)
    opts = make_optimizers(model, cfg)
    state = State()
    if last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        try:
            model.load_state_dict(ck["model"])
            for o, sd in zip(opts, ck["opt"], strict=True):
                o.load_state_dict(sd)
        except (RuntimeError, ValueError, TypeError, KeyError) as e:  # e.g. an older ccs-tiny run
            raise RuntimeError(
                f"{last} does not fit the current {cfg.model} config "
                f"(lib/ccs/model_configs/{open_clip_config(cfg)}.json) and training code: it was "
                f"trained by another version. Train into a new --out folder, or delete "
                f"{run_dir}."
            ) from e
        state = State(**ck["state"])
    tokenizer = open_clip.get_tokenizer(open_clip_config(cfg))
    preprocess = models.tensor_preprocess(model)
    loss_fn = open_clip.ClipLoss()
    eval_batch = world.sample(cfg.eval_n, EVAL_SEED, "test")
    end = cfg.steps if max_steps is None else min(cfg.steps, state.step + max_steps)
    model.train()
    bar = tqdm(total=end, initial=state.step, disable=not progress, desc=f"train {cfg.model}", unit="step")

    def checkpoint():
        _save(
            {"model": model.state_dict(), "opt": [o.state_dict() for o in opts], "state": asdict(state), "config": asdict(cfg)},
            last,
        )

    t0 = time.time()
    for step, images, texts in batches(cfg, state.step, end):
        assert step == state.step
        images, texts = preprocess(images).to(device), texts.to(device)
        for o in opts:
            for g in o.param_groups:
                g["lr"] = lr_at(state.step, cfg)
        # the math attention kernel: with 10 image and 26 text tokens, the fused CPU kernels are slower
        with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None), sdpa_kernel([SDPBackend.MATH]):
            img, txt, scale = model(images, texts)[:3]
            loss = loss_fn(img.float(), txt.float(), scale.float())
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        state.step += 1
        now = time.time()
        state.wall += now - t0
        t0 = now
        value, logit_scale = loss.item(), model.logit_scale.exp().item()
        state.losses.append([state.step, round(value, 4), round(logit_scale, 2)])
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}", scale=f"{logit_scale:.1f}")
        if state.step % cfg.eval_every == 0 or state.step == cfg.steps:
            ev = eval_concepts(model, tokenizer, eval_batch) | {"step": state.step, "wall": round(state.wall)}
            state.evals.append(ev)
            bar.write(
                f"step {state.step}: mean {ev['mean']:.3f} pos_cos {ev['position_cos']:.3f} "
                + " ".join(f"{k} {v:.2f}" for k, v in ev["zero_shot"].items())
            )
            if ev["mean"] > state.best:
                state.best, state.best_step = ev["mean"], state.step
                _save({"model": model.state_dict(), "eval": ev, "step": state.step}, run_dir / "best.pt")
        if state.step % cfg.save_every == 0 or state.step == end:
            checkpoint()
    bar.close()
    return state


def restart_from_export(run_dir: str | Path, weights: str | Path, record: str | Path, why: str) -> State:
    """Recreate a run folder from an export (weights and record) whose checkpoints are lost, e.g.
    when a borrowed GPU machine went back mid-run, so that `train` resumes it at the exported
    step: same config, same data stream, the record's losses and evals; only the optimizer moments
    start again from zero. `why` goes to notes.txt, which the next export's record carries."""
    from safetensors.torch import load_file

    run_dir, rec = Path(run_dir), json.loads(Path(record).read_text())
    cfg = TrainConfig(**rec["train_config"])
    step = rec["weights_from_step"]
    state_dict = fold_normalisation(
        {k: v.float() for k, v in load_file(weights).items()}, models.TINY_MEAN, models.TINY_STD, cfg.image_mean, cfg.image_std
    )  # undo export's fold
    model = build_model(cfg.model, cfg.seed, cfg.image_mean, cfg.image_std, cfg.config)
    model.load_state_dict(state_dict)
    evals = [e for e in rec["evals"] if e["step"] <= step]
    best = max(evals, key=lambda e: e["mean"])
    curve = rec["loss_curve"]
    state = State(
        step=step,
        wall=float(evals[-1]["wall"]),
        losses=[list(c) for c in zip(curve["step"], curve["loss"], curve["logit_scale"]) if c[0] <= step],
        evals=evals,
        best=best["mean"],
        best_step=best["step"],
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    notes = [rec.get("notes", ""), f"Restarted at step {step} from its export, optimizer moments reset: {why}"]
    (run_dir / "notes.txt").write_text("\n".join(n for n in notes if n) + "\n")
    _save(
        {
            "model": model.state_dict(),
            "opt": [o.state_dict() for o in make_optimizers(model, cfg)],
            "state": asdict(state),
            "config": asdict(cfg),
        },
        run_dir / "last.pt",
    )
    if best["step"] == step:
        _save({"model": model.state_dict(), "eval": best, "step": step}, run_dir / "best.pt")
    return state


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}"


def retrain_command(cfg: dict, out: str) -> str:
    """The `ccs train-tiny` command line that repeats a run of config `cfg` (then its export)."""
    cmd = (
        f"ccs train-tiny --model {cfg.get('model', models.TINY)} --out {out} --pairs {cfg['pairs']} "
        f"--batch-size {cfg['batch_size']} "
        f"--lr {cfg['lr']} --seed {cfg['seed']} --threads {cfg['threads']} "
        f"--sibling-frac {cfg['sibling_frac']} --sibling-group {cfg.get('sibling_group', 2)} "
        f"--precision {cfg.get('precision', 'fp32')} --loader-workers {cfg.get('loader_workers', 0)}"
    )
    if cfg.get("sibling_weights"):
        cmd += " --sibling-weights " + ",".join(f"{k}={v}" for k, v in cfg["sibling_weights"].items())
    return f"{cmd}  # resumable; then: ccs train-tiny --out {out} --export"


def export(run_dir: str | Path, out_dir: str | Path | None = None, which: str = "best") -> Path:
    """Write the run's best (or last) weights as fp16 safetensors, and its training record, to
    `out_dir` (default: the package's weights folder) as ccs-tiny.safetensors / ccs-tiny.record.json."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    out_dir = Path(out_dir or models.WEIGHTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    cfg, state = last["config"], State(**last["state"])
    if (run_dir / "config.json").exists():  # the run's own record of its config wins
        cfg = json.loads((run_dir / "config.json").read_text())
    src = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False) if which == "best" else last
    state_dict = fold_normalisation(src["model"], cfg.get("image_mean", models.TINY_MEAN), cfg.get("image_std", models.TINY_STD))
    weights = {k: v.detach().to(torch.float16).contiguous() for k, v in state_dict.items()}
    name = cfg["model"]
    save_file(weights, out_dir / f"{name}.safetensors")
    step = src.get("step", state.step)
    curve = state.losses[:: max(1, len(state.losses) // 400)]  # ~400 points of the loss curve
    record = {
        "model": name,
        "config": json.loads((models.CONFIG_DIR / f"{open_clip_config(cfg)}.json").read_text()),
        "train_config": cfg,
        "weights_from_step": step,
        "steps_run": state.step,
        "pairs_seen": step * cfg["batch_size"],
        "pairs_seen_total": state.step * cfg["batch_size"],
        "wall_time_s": round(state.wall),
        "hardware": hardware(),
        "threads": cfg["threads"],
        "torch": torch.__version__,
        "loss_curve": {"step": [c[0] for c in curve], "loss": [c[1] for c in curve], "logit_scale": [c[2] for c in curve]},
        "evals": state.evals,
        "eval_seed": EVAL_SEED,
        "eval_n": cfg["eval_n"],
        "best_eval": src.get("eval"),
        "notes": (run_dir / "notes.txt").read_text().strip() if (run_dir / "notes.txt").exists() else "",
        "retrain": retrain_command(cfg, f"train-runs/{run_dir.name}"),
    }
    (out_dir / f"{name}.record.json").write_text(json.dumps(record, indent=1))
    return out_dir / f"{name}.safetensors"
