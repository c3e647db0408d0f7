"""One model's analysis as the set-based pages open it (ccs.study): every source of sets from one call."""

import pytest

from ccs import headsets, study


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CCS_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield study.load(
        "ccs-tiny", images=64, pool="world", texts=5, seed=0, backend="embedding", calibration="pool", sets="run", seeds=6
    )
    mp.undo()


def test_one_call_gives_the_page_s_sets_and_both_sources_beside_them(st):
    assert st.module is st.analysis.model and st.tokenizer is st.analysis.tokenizer
    assert len(st.table) == st.spec.heads * len(st.spec.analysed_layers)
    assert st.sets.source == "this run" and len(st.sets.random) == 6
    assert st.other.source == "ground truth" and st.fn.source == "function"
    assert len(st.other.random) == len(st.fn.random) == headsets.SECONDARY_DRAWS  # fewer draws beside
    assert [p for p, _ in st.sources()] == ["", "ground truth: ", "function: "]
    cond = st.conditions(equal=False)
    assert list(cond).count("original") == 1 and not any("equal" in k for k in cond)
    assert cond["function: high" if "function: high" in cond else "function: high/0"] in (st.fn.high, *[h for h, _ in st.fn.ties])
    assert all(k.split(": ")[0] in ("ground truth", "function") for k in cond if ": " in k)
    # the categories beside the paper's six models: the two text sources, never the function
    beside = st.beside_paper()
    assert list(beside.index[:2]) == ["this model, this run's sets", "this model, the ground truth's sets"]
    assert len(beside) == 2 + 6 and "function" not in " ".join(beside.index)
    assert "sets from: this run" in st.describe() and "function sets" in st.describe()


def test_concept_sets_per_label_source_and_their_conditions(st):
    sources = st.concept_sets("run", seeds=3)
    assert [(l, p) for l, p, _ in sources] == [("run", ""), ("truth", "truth: "), ("function", "function: ")]
    assert sources[0][2] == headsets.concept_sets(st.table, seeds=3)
    cond = study.concept_conditions(sources)
    concept = next(iter(sources[1][2]))
    assert cond[f"truth: {concept}"] == sources[1][2][concept]["heads"]
    assert cond[f"truth: {concept}-random/2"] == sources[1][2][concept]["random"][2]
    assert [l for l, _, _ in st.concept_sets("truth", seeds=3)][:2] == ["truth", "run"]
    with pytest.raises(ValueError, match="labels must be"):
        st.concept_sets("mine")
