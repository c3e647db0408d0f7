"""Prompts and class names: clip-benchmark's zero-shot templates and class names (`templates`,
`classnames`), Country-211's folders (`COUNTRY211_CODES`), the paper's Oxford-Pets classes
(`PETS_PAPER_CLASSES`), and the ImageNet-A/-R 200-class subsets with CLIP's names of them."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from ccs.datasets.registry import DatasetError, spec

# Country-211's 211 folders (ISO 3166 codes, as torchvision's Country211 sorts them); clip-benchmark's
# country211 class names are in this order.
COUNTRY211_CODES = tuple(
    """
AD AE AF AG AI AL AM AO AQ AR AT AU AW AX AZ BA BB BD BE BF BG BH BJ BM BN BO BQ BR BS BT BW BY BZ CA CD CF CH CI
CK CL CM CN CO CR CU CV CW CY CZ DE DK DM DO DZ EC EE EG ES ET FI FJ FK FO FR GA GB GD GE GF GG GH GI GL GM GP GR
GS GT GU GY HK HN HR HT HU ID IE IL IM IN IQ IR IS IT JE JM JO JP KE KG KH KN KP KR KW KY KZ LA LB LC LI LK LR LT
LU LV LY MA MC MD ME MF MG MK ML MM MN MO MQ MR MT MU MV MW MX MY MZ NA NC NG NI NL NO NP NZ OM PA PE PF PG PH PK
PL PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SS SV SX SY SZ TG TH TJ TL TM TN TO
TR TT TW TZ UA UG US UY UZ VA VE VG VI VN VU WS XK YE ZA ZM ZW""".split()
)
# The paper's Oxford-Pets classes (avinashsai/CCS-CLIP, src/labels.py get_oxfordpets_labels): the first
# token of the image file names, in the paper's order (dogs, then cats).
PETS_PAPER_CLASSES = (
    "american",
    "basset",
    "beagle",
    "boxer",
    "chihuahua",
    "english",
    "german",
    "great",
    "havanese",
    "japanese",
    "keeshond",
    "leonberger",
    "miniature",
    "newfoundland",
    "pomeranian",
    "pug",
    "saint",
    "samoyed",
    "scottish",
    "shiba",
    "staffordshire",
    "wheaten",
    "yorkshire",
    "Abyssinian",
    "Bengal",
    "Birman",
    "Bombay",
    "British",
    "Egyptian",
    "Maine",
    "Persian",
    "Ragdoll",
    "Russian",
    "Siamese",
    "Sphynx",
)


@cache
def _clip_benchmark(which: str) -> dict:
    """clip-benchmark's ``en_<which>.json`` (a copy in ccs/data, see clip_benchmark_LICENSE.txt)."""
    path = resources.files("ccs") / "data" / f"clip_benchmark_en_{which}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def templates(name: str) -> list[str]:
    """The zero-shot prompt templates of a classification dataset, with ``{}`` for the class name:
    clip-benchmark's list for the dataset (CLIP's per-dataset templates; the paper's for Oxford-Pets-paper),
    CLIP's 80 ImageNet templates for ImageNet-A/-R."""
    s = spec(name)
    if s.kind != "classification":
        raise DatasetError(f"{s.name} is a video dataset: it has captions, not prompt templates")
    if s.prompts is None:
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return [t("{}") if callable(t) else t for t in OPENAI_IMAGENET_TEMPLATES]
    return [t.replace("{c}", "{}") for t in _clip_benchmark("zeroshot_classification_templates")[s.prompts]]


def classnames(name: str) -> list[str] | None:
    """The class names of a classification dataset whose class list is fixed (label i is name i):
    Country-211 (CLIP's names of `COUNTRY211_CODES`), Oxford-Pets (CLIP's 37 breeds), Oxford-Pets-paper
    (`PETS_PAPER_CLASSES`), ImageNet-A/-R (CLIP's names of their 200 classes). None for CIFAR-10/100 and
    Food-101, whose names `load_classification` reads from the data."""
    s = spec(name)
    if s.name == "Country-211":
        return list(_clip_benchmark("classnames")["country211"])
    if s.name == "Oxford-Pets":
        return list(_clip_benchmark("classnames")["pets"])
    if s.name == "Oxford-Pets-paper":
        return list(PETS_PAPER_CLASSES)
    if s.name.startswith("ImageNet"):
        return list(_imagenet_subset(s.folder.split("-")[1])[1])
    return None


@cache
def _imagenet_subset(which: str) -> tuple[list[str], list[str]]:
    """(wnids, CLIP class names) of the 200-class ImageNet-A or ImageNet-R subset, from timm's lists."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    wnids = (resources.files("timm.data") / "_info" / f"imagenet_{which}_synsets.txt").read_text().split()
    index = {w: i for i, w in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    return wnids, [IMAGENET_CLASSNAMES[index[w]] for w in wnids]
