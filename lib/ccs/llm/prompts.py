"""The few-shot prompts of the ``openai`` backend: the labeler's (`label_prompt`: name the one concept
that a head's five texts share) and the judge's (`judge_prompt`: does one text match a concept, 1 or 0).
"""

from __future__ import annotations

from typing import Sequence

from ccs.llm.concepts import vocabulary

LABEL_SYSTEM = (
    "You study the attention heads of a CLIP vision model. Each head is described by five text "
    "descriptions of the images it responds to. Name the ONE concept that the descriptions share, "
    "as a single lower-case word. {vocab}If they share none, name the concept that most of them "
    "share. Answer with the word only."
)
LABEL_EXAMPLES = [
    (
        [
            "Photo taken in Rio de Janeiro",
            "Picture captured in the Swiss Alps",
            "Image taken in Cyprus",
            "Photo shot in downtown Tokyo",
            "A snapshot from Marrakech",
        ],
        "location",
    ),
    (
        ["A bright orange hue", "Vibrant shades of teal", "Image with a red color", "Pastel pink tones", "A charcoal gray color"],
        "colour",
    ),
    (
        [
            "A photo of a dog",
            "Cat sleeping on a sofa",
            "Majestic lion in the savanna",
            "Photo of a horse",
            "Detailed illustration of a spaceship",
        ],
        "animal",
    ),
]
JUDGE_SYSTEM = (
    "You check concept labels of attention heads of a CLIP vision model. Given a concept and one "
    "text description, answer 1 if the description is an instance of the concept or is clearly "
    "about it, and 0 if it is not. Answer with the digit only."
)
JUDGE_EXAMPLES = [
    ("location", "Photo taken in Rio de Janeiro", 1),
    ("location", "Detailed illustration of a spaceship", 0),
    ("colour", "Vibrant shades of teal", 1),
    ("animal", "A bright orange hue", 0),
]


def label_prompt(texts: Sequence[str], vocab: bool) -> list[dict]:
    words = ", ".join(vocabulary())
    system = LABEL_SYSTEM.format(vocab=f"Choose it from this list: {words}. " if vocab else "")
    shots = [
        m
        for texts_, answer in LABEL_EXAMPLES
        for m in ({"role": "user", "content": _head_message(texts_)}, {"role": "assistant", "content": answer})
    ]
    return [{"role": "system", "content": system}, *shots, {"role": "user", "content": _head_message(texts)}]


def _head_message(texts: Sequence[str]) -> str:
    return "Descriptions:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1)) + "\nConcept:"


def judge_prompt(text: str, concept: str) -> list[dict]:
    shots = [
        m
        for c, t, a in JUDGE_EXAMPLES
        for m in ({"role": "user", "content": _judge_message(t, c)}, {"role": "assistant", "content": str(a)})
    ]
    return [{"role": "system", "content": JUDGE_SYSTEM}, *shots, {"role": "user", "content": _judge_message(text, concept)}]


def _judge_message(text: str, concept: str) -> str:
    return f"Concept: {concept}\nDescription: {text}\nMatches (1 or 0):"
