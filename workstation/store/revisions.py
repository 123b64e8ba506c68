"""Revisions of an image: masks, explanations and reviews, each appended and never changed.

Which revision is current when several stations wrote is the rule in ``store.current``;
explanations and reviews refresh the mirrored ``images`` columns in the same write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workstation.core.types import (
    Explanation,
    ExplanationRevision,
    MaskRevision,
    Review,
    ReviewVerdict,
    check_literal,
    check_revision_source,
)
from workstation.store.base import as_binary_mask, timestamp
from workstation.store.current import NEWEST_FIRST, refresh_current, seen_keys
from workstation.store.images import ImagesMixin
from workstation.store.rows import NewMaskRevision, from_row


def _mask_revision(row: Mapping[str, Any]) -> MaskRevision:
    return from_row(MaskRevision, row)


def _explanation_revision(row: Mapping[str, Any]) -> ExplanationRevision:
    explanation = Explanation(
        verdict=row["verdict"],
        defect_type=row["defect_type"] or "",
        location=row["location"] or "",
        severity=row["severity"] or "low",
        description=row["description"] or "",
    )
    return from_row(ExplanationRevision, row, explanation=explanation)


def _review(row: Mapping[str, Any]) -> Review:
    return from_row(Review, row)


def _source_filter(sources: tuple[str, ...] | None) -> tuple[str, list[str]]:
    """SQL matching any of ``sources``; ``vlm`` also matches ``vlm:<version>``."""
    if not sources:
        return "", []
    clauses, params = [], []
    for source in sources:
        clauses.append("(source = ? OR source LIKE ?)")
        params += [source, f"{source}:%"]
    return " AND (" + " OR ".join(clauses) + ")", params


class RevisionsMixin(ImagesMixin):
    """Append and read mask, explanation and review revisions (masks are checked against
    their image, hence the images mixin below)."""

    def add_mask_revision(
        self,
        image_id: int,
        mask: np.ndarray,
        *,
        source: str,
        author: str,
        parent_id: int | None = None,
        model_version: str | None = None,
    ) -> MaskRevision:
        """Append a mask revision (any nonzero pixel is defect); the mask must be image-sized."""
        entry = NewMaskRevision(image_id, mask, source, author, parent_id, model_version)
        return self.add_mask_revisions([entry])[0]

    def add_mask_revisions(self, entries: Sequence[NewMaskRevision]) -> list[MaskRevision]:
        """Append several mask revisions in one transaction (model outputs for a folder)."""
        for entry in entries:
            check_revision_source(entry.source)
        records = {i: self.get_image(i) for i in {e.image_id for e in entries}}
        with self._write() as w:
            return w.add_masks([(records[e.image_id], e) for e in entries], created_at=timestamp())

    def latest_mask_revision(
        self, image_id: int, *, sources: tuple[str, ...] | None = None
    ) -> MaskRevision | None:
        extra, params = _source_filter(sources)
        row = self._one(
            f"SELECT * FROM mask_revisions WHERE image_id = ?{extra} "
            f"ORDER BY {NEWEST_FIRST} LIMIT 1",
            [image_id, *params, self.station_id],
        )
        return _mask_revision(row) if row else None

    def mask_history(self, image_id: int) -> list[MaskRevision]:
        rows = self._query(
            "SELECT * FROM mask_revisions WHERE image_id = ? ORDER BY id", [image_id]
        )
        return [_mask_revision(r) for r in rows]

    def load_mask(self, revision_or_blob: MaskRevision | str) -> np.ndarray:
        sha = revision_or_blob if isinstance(revision_or_blob, str) else revision_or_blob.blob
        return as_binary_mask(self.blobs.get_array(sha))

    # ------------------------------------------------------------- explanations
    def add_explanation(
        self,
        image_id: int,
        explanation: Explanation,
        *,
        source: str,
        author: str,
        parent_id: int | None = None,
        model_version: str | None = None,
    ) -> ExplanationRevision:
        check_revision_source(source)
        station = self.station_id
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO explanation_revisions (image_id, source, author, created_at, "
                "parent_id, model_version, verdict, defect_type, location, severity, "
                "description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    source,
                    author,
                    timestamp(),
                    parent_id,
                    model_version,
                    explanation.verdict,
                    explanation.defect_type,
                    explanation.location,
                    explanation.severity,
                    explanation.description,
                ),
            )
            revision_id = cursor.lastrowid
            refresh_current(w.conn, [image_id], station)
        row = self._one("SELECT * FROM explanation_revisions WHERE id = ?", (revision_id,))
        assert row is not None
        return _explanation_revision(row)

    def latest_explanation(
        self, image_id: int, *, sources: tuple[str, ...] | None = None
    ) -> ExplanationRevision | None:
        extra, params = _source_filter(sources)
        row = self._one(
            f"SELECT * FROM explanation_revisions WHERE image_id = ?{extra} "
            f"ORDER BY {NEWEST_FIRST} LIMIT 1",
            [image_id, *params, self.station_id],
        )
        return _explanation_revision(row) if row else None

    def explanation_history(self, image_id: int) -> list[ExplanationRevision]:
        rows = self._query(
            "SELECT * FROM explanation_revisions WHERE image_id = ? ORDER BY id", [image_id]
        )
        return [_explanation_revision(r) for r in rows]

    # ------------------------------------------------------------------ reviews
    def add_review(
        self,
        image_id: int,
        verdict: ReviewVerdict,
        *,
        reviewer: str,
        reason: str = "",
        model_version: str | None = None,
    ) -> Review:
        check_literal(verdict, ReviewVerdict, "review verdict")
        station = self.station_id
        with self._write() as w:
            # What the inspector had in front of them: other stations' verdicts that this
            # review overrides knowingly (a review that saw them ends a sync conflict).
            seen = seen_keys(w.conn, image_id)
            cursor = w.conn.execute(
                "INSERT INTO reviews (image_id, verdict, reason, reviewer, created_at, "
                "model_version, seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id,
                    verdict,
                    reason,
                    reviewer,
                    timestamp(),
                    model_version,
                    json.dumps(seen) if seen else None,
                ),
            )
            review_id = cursor.lastrowid
            refresh_current(w.conn, [image_id], station)
        row = self._one("SELECT * FROM reviews WHERE id = ?", (review_id,))
        assert row is not None
        return _review(row)

    def latest_review(self, image_id: int) -> Review | None:
        row = self._one(
            f"SELECT * FROM reviews WHERE image_id = ? ORDER BY {NEWEST_FIRST} LIMIT 1",
            (image_id, self.station_id),
        )
        return _review(row) if row else None

    def review_history(self, image_id: int) -> list[Review]:
        rows = self._query("SELECT * FROM reviews WHERE image_id = ? ORDER BY id", (image_id,))
        return [_review(r) for r in rows]

    def list_reviews(self, product_id: int) -> list[Review]:
        rows = self._query(
            "SELECT r.* FROM reviews r JOIN images i ON i.id = r.image_id "
            "WHERE i.product_id = ? ORDER BY r.id",
            (product_id,),
        )
        return [_review(r) for r in rows]
