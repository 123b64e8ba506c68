"""Threshold settings and golden marks: an engineer's choices, each with its author.

A threshold moved in the threshold panel (or ``models threshold --set``) is appended to
``threshold_settings`` and copied onto the product in the same transaction, so the review
window, the queue and the training gate read the new value at once while the history
keeps every earlier one. Golden marks pick reviewed images the gate judges every version
on (``services.rounds`` holds them out of training).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workstation.core.errors import UserError
from workstation.store.base import timestamp
from workstation.store.products import ProductsMixin
from workstation.store.rows import from_row


@dataclass(frozen=True)
class ThresholdSetting:
    id: int
    product_id: int
    threshold: float
    author: str
    model_version: str | None
    """The active experts version whose calibrated scores the value is in."""
    reason: str
    created_at: str


def _setting(row: Mapping[str, Any]) -> ThresholdSetting:
    return from_row(ThresholdSetting, row)


class ThresholdsMixin(ProductsMixin):
    """Set and list thresholds; mark and list golden images."""

    def set_threshold(
        self,
        product_id: int,
        threshold: float,
        *,
        author: str,
        model_version: str | None = None,
        reason: str = "",
    ) -> ThresholdSetting:
        if not math.isfinite(threshold):
            raise UserError(f"a threshold must be a finite number; got {threshold}")
        if not author.strip():
            raise UserError("a threshold setting needs its author")
        self.get_product(product_id)
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO threshold_settings (product_id, threshold, author, model_version, "
                "reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (product_id, float(threshold), author, model_version, reason, timestamp()),
            )
            w.conn.execute(
                "UPDATE products SET threshold = ? WHERE id = ?", (float(threshold), product_id)
            )
            # the queue's flag follows the threshold; each prediction row keeps what the
            # model said when it ran
            w.conn.execute(
                "UPDATE images SET latest_anomalous = (latest_score >= ?) "
                "WHERE product_id = ? AND latest_score IS NOT NULL",
                (float(threshold), product_id),
            )
            new_id = cursor.lastrowid
        row = self._one("SELECT * FROM threshold_settings WHERE id = ?", (new_id,))
        assert row is not None
        return _setting(row)

    def threshold_history(self, product_id: int) -> list[ThresholdSetting]:
        """Every setting of the product's threshold, oldest first."""
        rows = self._query(
            "SELECT * FROM threshold_settings WHERE product_id = ? ORDER BY id", (product_id,)
        )
        return [_setting(r) for r in rows]

    def mark_golden(self, image_ids: Sequence[int], *, author: str) -> int:
        """Mark images golden (again marking one is a no-op); returns how many were new."""
        now = timestamp()
        with self._write() as w:
            before = w.conn.total_changes
            w.conn.executemany(
                "INSERT OR IGNORE INTO golden_images (image_id, author, created_at) "
                "VALUES (?, ?, ?)",
                [(int(i), author, now) for i in image_ids],
            )
            return int(w.conn.total_changes - before)

    def golden_image_ids(self, product_id: int) -> set[int]:
        rows = self._query(
            "SELECT g.image_id FROM golden_images g JOIN images i ON i.id = g.image_id "
            "WHERE i.product_id = ?",
            (product_id,),
        )
        return {int(r["image_id"]) for r in rows}
