"""The generated page of the paper's numbers beside this book's runs."""

import json

from ccs import models, paper_tables, pipeline


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_a_runs_number_sits_beside_the_papers(tmp_path):
    runs = tmp_path / "runs"
    (runs / "ViT-B-16-OpenAI").mkdir(parents=True)
    (runs / "ViT-B-16-OpenAI" / "pruning.json").write_text(
        json.dumps({"weights": "trained", "paper_tables": {"pruning_high_low": {"CIFAR-10": [77.5, 64.25, 75.0]}}})
    )
    (runs / "ViT-B-16-OpenAI" / "ccs.json").write_text(
        json.dumps({"weights": "trained", "category_counts": {"high": 9, "moderate": 15, "low": 3, "unknown": 0}})
    )
    text = paper_tables.page(runs)
    pruning = _section(text, "Soft pruning, zero-shot top-1 %")
    # paper, run for each condition, in one row: original 78.10 | 77.50, high 63.93 | 64.25, low 76.44 | 75.00
    assert "| ViT-B-16-OpenAI | CIFAR-10 | 78.10 | 77.50 | 63.93 | 64.25 | 76.44 | 75.00 |" in pruning
    assert "| ViT-B-16-OpenAI | CIFAR-100 | 68.22 |  | 51.70 |  | 65.38 |  |" in pruning  # measured: CIFAR-10 only
    # a paper model without a run: the paper's numbers, blank run columns
    assert "| ViT-B-32-OpenAI | CIFAR-10 | 75.68 |  | 71.31 |  | 73.61 |  |" in pruning
    counts = _section(text, "Heads per CCS category (of the analysed heads)")
    assert "| ViT-B-16-OpenAI | heads | 10 | 9 | 14 | 15 | 4 | 3 |" in counts  # from the ccs page
    assert "Paper models run in this book: ViT-B-16-OpenAI." in text


def test_every_claim_is_a_section_with_all_six_paper_models(tmp_path):
    text = paper_tables.page(tmp_path)
    paper = models.paper()
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == [t.title for t in paper_tables.TABLES]
    assert "This book runs none of the paper's models" in text and "run |" not in text
    for model in paper["models"]:
        assert f"| {model} | " in _section(text, "Soft pruning, zero-shot top-1 %") or model not in paper["pruning_high_low"]


def test_trained_models_sit_beside_the_paper_on_the_analogous_claim(tmp_path):
    trained = [m for m in pipeline.grid()["models"] if m in models.zoo()][:1]
    (tmp_path / trained[0]).mkdir()
    (tmp_path / trained[0] / "pruning.json").write_text(
        json.dumps(
            {
                "weights": "trained",
                "replication": {
                    "this run": {"pruning-high-vs-low": {"estimate": 0.057, "low": 0.051, "high": 0.062, "verdict": "supported"}},
                    "ground truth": {
                        "pruning-high-vs-low": {"estimate": -0.01, "low": -0.02, "high": 0.001, "verdict": "inconclusive"}
                    },
                },
            }
        )
    )
    section = _section(paper_tables.page(tmp_path), "Soft pruning, zero-shot top-1 %")
    assert f"| {trained[0]} | +5.70 pp [5.10, 6.20] | supported | \u22121.00 pp [\u22122.00, 0.10] | inconclusive |" in section


def test_trained_models_counts_in_the_paper_s_categories_say_whether_its_test_can_be_formed(tmp_path):
    trained = [m for m in pipeline.grid()["models"] if m in models.zoo()][:2]
    for model, (run, truth) in zip(trained, [((1, 0), (2, 0)), ((5, 3), (4, 2))]):
        (tmp_path / model).mkdir()
        (tmp_path / model / "pruning.json").write_text(
            json.dumps(
                {
                    "weights": "trained",
                    "per_head": [{}] * 32,
                    "category_counts_by_source": {
                        "this run": dict(zip(("high", "low"), run)),
                        "ground truth": dict(zip(("high", "low"), truth)),
                    },
                }
            )
        )
    counts = _section(paper_tables.page(tmp_path), "Heads per CCS category (of the analysed heads)")
    assert f"| {trained[0]} | 32 | 1 (3 %) | 0 (0 %) | 2 (6 %) | 0 (0 %) | cannot be formed |" in counts
    assert f"| {trained[1]} | 32 | 5 (16 %) | 3 (9 %) | 4 (12 %) | 2 (6 %) | yes |" in counts


def test_random_weights_are_flagged(tmp_path):
    (tmp_path / "ViT-B-32-OpenAI").mkdir()
    (tmp_path / "ViT-B-32-OpenAI" / "ood.json").write_text(json.dumps({"weights": "random"}))
    assert "*ViT-B-32-OpenAI*: **random weights** in ood" in paper_tables.page(tmp_path)


def test_the_committed_page_is_the_generated_one():
    out = paper_tables.target()
    assert out is not None and out.read_text() == paper_tables.page(), "run `ccs paper-tables`"
    assert str(out.relative_to(pipeline.ROOT).with_suffix("")) in str(pipeline.toc())


def test_the_experiment_pages_table_uses_the_same_rows():
    from ccs import pruning

    class Results:  # the one method beside_paper reads
        def value(self, name, dataset, measure):
            return {"original": 0.5, "high": 0.4, "low": 0.45}[name]

    frame = pruning.beside_paper(models.paper()["pruning_high_low"], "ViT-B-16-OpenAI", Results(), {"CIFAR-10": None})
    row = frame.loc[("ViT-B-16-OpenAI", "CIFAR-10")]
    assert (row["paper: original"], row["this run: original"], row["this run: high"]) == (78.10, 50.0, 40.0)
    low = frame.loc[("ViT-B-16-OpenAI", "Food-101"), "this run: low"]
    assert low != low  # NaN
