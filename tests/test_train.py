"""Training the tiny CLIP: schedule, loss going down, exact resumption, export, shipped weights."""

import json

import pytest
import torch

from ccs import evaluate, models, train, world


def _cfg(**kw):
    # tiny batches and no evaluation inside the loop: a few steps take seconds; sibling pairs, not
    # groups of 8, so that 16 images are not mostly one hard group whose loss varies batch to batch
    return train.TrainConfig(
        **{
            "pairs": 16 * 8,
            "batch_size": 16,
            "warmup": 2,
            "eval_every": 1000,
            "eval_n": 16,
            "save_every": 2,
            "lr": 1e-3,
            "sibling_frac": 0.5,
            "sibling_group": 2,
        }
        | kw
    )


def test_schedule_warms_up_then_decays_to_zero():
    cfg = train.TrainConfig(pairs=256 * 100, batch_size=256, warmup=10, lr=1.0)
    lrs = [train.lr_at(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-3


def test_few_steps_lower_the_loss_and_resume_identically(tmp_path):
    straight = train.train(tmp_path / "a", _cfg(), progress=False)
    losses = [l for _, l, _ in straight.losses]
    assert len(losses) == 8 and losses[-1] < losses[0]
    # stop after 3 steps, resume twice: the same losses and the same weights
    train.train(tmp_path / "b", _cfg(), max_steps=3, progress=False)
    train.train(tmp_path / "b", None, max_steps=3, progress=False)
    resumed = train.train(tmp_path / "b", None, progress=False)
    assert [l for _, l, _ in resumed.losses] == losses
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # export: fp16 safetensors and a training record
    path = train.export(tmp_path / "a", tmp_path / "w")
    from safetensors.torch import load_file

    w = load_file(path)
    assert all(v.dtype == torch.float16 for v in w.values()) and path.stat().st_size < 25e6
    record = json.loads((tmp_path / "w" / "ccs-tiny.record.json").read_text())
    assert record["steps_run"] == 8 and record["hardware"] and record["loss_curve"]["loss"]


def test_a_run_whose_checkpoints_are_lost_restarts_from_its_export(tmp_path):
    train.train(tmp_path / "a", _cfg(eval_every=2), max_steps=4, progress=False)
    weights = train.export(tmp_path / "a", tmp_path / "w")
    record = weights.with_name(weights.name.replace(".safetensors", ".record.json"))
    exported = json.loads(record.read_text())
    state = train.restart_from_export(tmp_path / "b", weights, record, why="the machine went back")
    assert state.step == exported["weights_from_step"] and state.evals == exported["evals"][: len(state.evals)]
    # the restarted run holds the exported weights and trains on to the end of the schedule
    from safetensors.torch import load_file

    w = load_file(weights)
    restarted = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(restarted[k].half(), w[k]) for k in w)
    done = train.train(tmp_path / "b", None, progress=False)
    assert done.step == _cfg().steps and done.losses[-1][0] == done.step
    path = train.export(tmp_path / "b", tmp_path / "w2")
    notes = json.loads(path.with_name(path.name.replace(".safetensors", ".record.json")).read_text())["notes"]
    assert f"Restarted at step {state.step}" in notes and "the machine went back" in notes


def test_recorded_retrain_command_repeats_the_run_config(tmp_path):
    import shlex

    from typer.testing import CliRunner

    from ccs.cli import app

    cfg = _cfg(sibling_weights={"shape": 0.7, "position": 0.3}, seed=3, sibling_frac=0.75, sibling_group=4, precision="fp32")
    train.train(tmp_path / "run", cfg, max_steps=1, progress=False)
    train.export(tmp_path / "run", tmp_path / "w", which="last")
    command = json.loads((tmp_path / "w" / "ccs-tiny.record.json").read_text())["retrain"]
    args = shlex.split(command.split("#")[0])
    assert args[:2] == ["ccs", "train-tiny"]
    args[args.index("--out") + 1] = str(tmp_path / "again")
    result = CliRunner().invoke(app, args[1:] + ["--max-steps", "0", "--eval-every", "1000"])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    mine = json.loads((tmp_path / "run" / "config.json").read_text())
    for key in (
        "pairs",
        "batch_size",
        "lr",
        "seed",
        "threads",
        "sibling_frac",
        "sibling_group",
        "sibling_weights",
        "precision",
        "loader_workers",
    ):
        assert again[key] == mine[key], key


def test_resuming_a_checkpoint_of_another_architecture_says_what_to_do(tmp_path):
    train.train(tmp_path, _cfg(), max_steps=2, progress=False)
    ck = torch.load(tmp_path / "last.pt", weights_only=False)
    ck["model"]["visual.conv1.weight"] = torch.zeros(7, 3, 2, 2)  # as if another patch size / width
    torch.save(ck, tmp_path / "last.pt")
    with pytest.raises(RuntimeError, match="another version.*new --out folder"):
        train.train(tmp_path, None, max_steps=1, progress=False)


@pytest.mark.parametrize("workers", [1, 3])
def test_worker_processes_render_the_same_batches_in_the_same_order_as_inline_rendering(tmp_path, workers):
    cfg = _cfg(pairs=16 * 6)
    inline = list(train.batches(cfg, 1, 6))
    worker = list(train.batches(_cfg(pairs=16 * 6, loader_workers=workers), 1, 6))
    assert [s for s, _, _ in inline] == [s for s, _, _ in worker] == [1, 2, 3, 4, 5]
    for (_, im_a, ids_a), (_, im_b, ids_b) in zip(inline, worker):
        assert torch.equal(im_a, im_b) and torch.equal(ids_a, ids_b)
    # the cached token ids are the tokenizer's
    import open_clip

    b = world.train_batch(16, 2, cfg.seed, cfg.sibling_frac, cfg.position_share, cfg.sibling_weights, cfg.sibling_group)
    assert torch.equal(inline[1][2], open_clip.get_tokenizer(cfg.model)(b.captions))


def test_bf16_autocast_trains_like_fp32(tmp_path):
    if train.resolve_precision("auto", "cpu") is None:
        pytest.skip("this CPU has no native bf16: `auto` trains in fp32, which the other tests cover")
    fp32 = train.train(tmp_path / "a", _cfg(precision="fp32"), progress=False)
    bf16 = train.train(tmp_path / "b", _cfg(precision="bf16"), progress=False)
    a, b = ([l for _, l, _ in s.losses] for s in (fp32, bf16))
    assert b[-1] < b[0] and max(abs(x - y) for x, y in zip(a, b)) < 0.05, (a, b)
    with pytest.raises(ValueError, match="auto, bf16 or fp32"):
        train.resolve_precision("fp16", "cpu")


def test_the_token_embedding_is_updated_only_where_captions_use_it(tmp_path):
    train.train(tmp_path, _cfg(pairs=16 * 2), progress=False)
    first = train.build_model().token_embedding.weight  # the same seed: the initial weights
    trained = torch.load(tmp_path / "last.pt", weights_only=False)["model"]["token_embedding.weight"]
    changed = (trained != first).any(1)
    used = set()
    import open_clip

    tok = open_clip.get_tokenizer(models.TINY)
    for step in range(2):
        cfg = _cfg()
        b = world.train_batch(16, step, cfg.seed, cfg.sibling_frac, cfg.position_share, cfg.sibling_weights, cfg.sibling_group)
        used |= set(tok(b.captions).unique().tolist())
    # the padding id (0) follows the end-of-text token, whose causal output never sees it: no gradient
    assert set(changed.nonzero().flatten().tolist()) == used - {0}


def test_logit_scale_is_clamped(tmp_path):
    state = train.train(tmp_path, _cfg(pairs=16 * 2, lr=5.0, warmup=1), progress=False)
    assert all(s <= 100.0 + 1e-3 for _, _, s in state.losses)


def test_shipped_weights_load_offline_and_clear_a_floor(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, _, tok = models.load("ccs-tiny")
    batch = world.sample(200, seed=424242, split="test")
    acc = evaluate.zero_shot_report(model, tok, batch, world.tasks())
    # measured on these images: shape 0.96, texture 0.925, size 0.975, count 0.99, the others
    # 0.995-1.0 (issue #13's targets: 0.90 shape, 0.85 texture, 0.95 the rest, on 1,000 images)
    floor = {"colour": 0.95, "scene": 0.95, "position": 0.95, "size": 0.93, "count": 0.95, "shape": 0.9, "texture": 0.85}
    assert all(acc[c] >= f for c, f in floor.items()), acc
    record = json.loads((models.WEIGHTS_DIR / "ccs-tiny.record.json").read_text())
    assert record["pairs_seen"] > 0 and record["wall_time_s"] > 0


def test_folding_the_input_normalisation_keeps_the_outputs():
    from open_clip.constants import OPENAI_DATASET_MEAN as M, OPENAI_DATASET_STD as S

    trained = train.build_model(mean=M, std=S).eval()
    images = world.sample(4, 0).images
    before = evaluate.image_embeddings(trained, images)
    shipped = train.build_model().eval()
    shipped.load_state_dict(train.fold_normalisation(trained.state_dict(), M, S))
    after = evaluate.image_embeddings(shipped, images)
    assert torch.allclose(before, after, atol=1e-4)
