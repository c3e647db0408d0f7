"""The generated page of the paper's numbers beside this book's runs."""
import json

from ccs import models, paper_tables, pipeline


def _section(text: str, model: str) -> str:
    return text.split(f"## {model}\n", 1)[1].split("\n## ", 1)[0]


def test_a_runs_number_sits_beside_the_papers(tmp_path):
    runs = tmp_path / "runs"
    (runs / "ViT-B-16-OpenAI").mkdir(parents=True)
    (runs / "ViT-B-16-OpenAI" / "pruning.json").write_text(json.dumps({
        "weights": "trained", "paper_tables": {"pruning_high_low": {"CIFAR-10": [77.5, 64.25, 75.0]}}}))
    (runs / "ViT-B-16-OpenAI" / "ccs.json").write_text(json.dumps({
        "weights": "trained", "category_counts": {"high": 9, "moderate": 15, "low": 3, "unknown": 0}}))
    text = paper_tables.page(runs)
    mine = _section(text, "ViT-B-16-OpenAI")
    # paper, run for each condition, in one row: original 78.10 | 77.50, high 63.93 | 64.25, low 76.44 | 75.00
    assert "| CIFAR-10 | 78.10 | 77.50 | 63.93 | 64.25 | 76.44 | 75.00 |" in mine
    assert "| CIFAR-100 | 68.22 |  | 51.70 |  | 65.38 |  |" in mine  # measured: CIFAR-10 only
    assert "| heads | 10 | 9 | 14 | 15 | 4 | 3 |" in mine  # CCS head counts from the ccs page
    other = _section(text, "ViT-B-32-OpenAI")
    assert "No run of this model" in other and "| CIFAR-10 | 75.68 |  | 71.31 |  | 73.61 |  |" in other


def test_every_paper_model_and_table_is_on_the_page(tmp_path):
    text = paper_tables.page(tmp_path)
    paper = models.paper()
    assert [line[3:] for line in text.splitlines() if line.startswith("## ")] == list(paper["models"])
    for table in paper_tables.TABLES:
        assert f"**{table.title}**" in text


def test_random_weights_are_flagged(tmp_path):
    (tmp_path / "ViT-B-32-OpenAI").mkdir()
    (tmp_path / "ViT-B-32-OpenAI" / "ood.json").write_text(json.dumps({"weights": "random"}))
    assert "**Random weights** in ood" in _section(paper_tables.page(tmp_path), "ViT-B-32-OpenAI")


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
    assert frame.loc[("ViT-B-16-OpenAI", "Food-101"), "this run: low"] != frame.loc[("ViT-B-16-OpenAI", "Food-101"), "this run: low"]  # NaN
