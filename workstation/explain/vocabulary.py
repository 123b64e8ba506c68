"""The product's vocabulary in a text encoder's space: free text onto words, shapes onto types.

- :func:`match_vocabulary`: an inspector's free-text type ("hairline crack", "Missing
  material", "chipped edge") onto the product's own word, when one is close enough; a word
  that appears in the text wins outright, then a word the template knows as a synonym
  ("dent" -> pit) when the product uses that shape's word.
- :func:`shape_prior`: before any example of a type exists, the template's shape class of
  a region (scratch-like, pit-like, ...) lends weight to the vocabulary words whose
  descriptions are near that shape's description. The defect-type head gives this prior
  a share of its answer for types nobody has corrected yet.
- :func:`search`: reviewed defects ranked by how close their words are to a query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workstation.explain.template import (
    SHAPE_PHRASES,
    SHAPE_SYNONYMS,
    ShapeClass,
    vocabulary_word,
)
from workstation.explain.text_encoder import TextEncoder, normalise_words

MATCH_BAR = {"minilm": 0.35, "ngram": 0.25}
"""Cosine similarity at or above which free text is taken to mean a vocabulary word."""
PRIOR_SHARPNESS = {"minilm": 20.0, "ngram": 10.0}
"""Softmax scale over similarities: how strongly the prior prefers the nearest word."""


@dataclass(frozen=True)
class VocabularyMatch:
    word: str | None
    """The vocabulary word the text means, or None (a new word: keep the inspector's)."""
    similarity: float


def _key(word: str) -> str:
    """A vocabulary word as the encoder reads it: with its shape's synonyms when it is a
    word the template knows ("pit" -> "pit defect: pit, spot, dent, hole, ...")."""
    words = normalise_words(word)
    for synonyms in SHAPE_SYNONYMS.values():
        if any(synonym in words for synonym in synonyms):
            return f"{words} defect: " + ", ".join(synonyms)
    return f"{words} defect"


def match_vocabulary(
    text: str, vocabulary: Sequence[str], encoder: TextEncoder
) -> VocabularyMatch:
    """The vocabulary word ``text`` names (see the module docstring)."""
    words = normalise_words(text)
    if not words or not vocabulary:
        return VocabularyMatch(None, 0.0)
    for word in sorted(vocabulary, key=len, reverse=True):
        if normalise_words(word) in words:
            return VocabularyMatch(word, 1.0)
    for shape, synonyms in SHAPE_SYNONYMS.items():
        named = vocabulary_word(shape, tuple(vocabulary))
        if named in vocabulary and any(re.search(rf"\b{s}", words) for s in synonyms):
            return VocabularyMatch(named, 1.0)
    scores = encoder.encode([words]) @ encoder.encode([_key(w) for w in vocabulary]).T
    best = int(np.argmax(scores[0]))
    similarity = float(scores[0, best])
    bar = MATCH_BAR.get(encoder.name, 0.5)
    return VocabularyMatch(vocabulary[best] if similarity >= bar else None, similarity)


def shape_description(shape: ShapeClass) -> str:
    return f"{shape} defect: {SHAPE_PHRASES[shape]}; " + ", ".join(SHAPE_SYNONYMS[shape])


def shape_prior_table(
    vocabulary: Sequence[str], encoder: TextEncoder
) -> dict[ShapeClass, dict[str, float]]:
    """For each shape class, a distribution over ``vocabulary`` by description similarity."""
    shapes: list[ShapeClass] = list(SHAPE_PHRASES)
    if not vocabulary:
        return {shape: {} for shape in shapes}
    scores = encoder.encode([shape_description(s) for s in shapes]) @ encoder.encode(
        [_key(w) for w in vocabulary]
    ).T
    scaled = scores * PRIOR_SHARPNESS.get(encoder.name, 10.0)
    scaled -= scaled.max(1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(1, keepdims=True)
    return {
        shape: {w: float(p) for w, p in zip(vocabulary, row, strict=True)}
        for shape, row in zip(shapes, probs, strict=True)
    }


@dataclass(frozen=True)
class SearchHit:
    key: int
    similarity: float


def search(
    query: str, documents: Sequence[tuple[int, str]], encoder: TextEncoder, *, limit: int = 20
) -> list[SearchHit]:
    """``documents`` (key, text) ranked by similarity to ``query``, best first."""
    texts = [text for _, text in documents]
    if not normalise_words(query) or not texts:
        return []
    scores = encoder.encode([query]) @ encoder.encode(texts).T
    order = np.argsort(-scores[0], kind="stable")[:limit]
    return [SearchHit(documents[int(i)][0], float(scores[0, int(i)])) for i in order]
