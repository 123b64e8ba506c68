"""Images and the review queue: imports, lookups, the filtered and sorted queue, priorities.

The queue reads the ``images`` columns that mirror each image's current value
(``store.current``), so filtering and sorting stay in SQL on indexed columns.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workstation.core.errors import UserError
from workstation.core.types import ImageRecord, Split, check_literal
from workstation.store.base import StoreBase, timestamp
from workstation.store.rows import (
    ImageFilter,
    ImageOrder,
    ImageRow,
    NewImage,
    NewMaskRevision,
    ReviewState,
)

_IMAGE_COLUMNS = "id, product_id, path, sha256, width, height, split, source_label, imported_at"
_ROW_COLUMNS = (
    f"{_IMAGE_COLUMNS}, latest_score, latest_anomalous, latest_review_verdict, "
    "latest_defect_type, priority, priority_reason, sync_conflict"
)
_ORDERS: dict[str, str] = {
    # Directions chosen so the (product, reviewed, column) indexes serve the sort; a NULL
    # priority or score sorts last in a descending order.
    "priority": "priority DESC, id DESC",
    "score": "latest_score DESC, id DESC",
    "name": "name, id",
}


# Positional, unlike the other records (``rows.from_row``): the queue's pages read plain
# tuples, no dict per row, to stay fast on 100,000 images.
def _filter(flt: ImageFilter | None, keywords: dict[str, Any]) -> ImageFilter:
    """``flt`` or the filter its field names as keywords spell (not both)."""
    if flt is not None and keywords:
        raise TypeError("give an ImageFilter or its fields as keywords, not both")
    return flt if flt is not None else ImageFilter(**keywords)


def _image(row: Sequence[Any]) -> ImageRecord:
    return ImageRecord(
        id=row[0],
        product_id=row[1],
        path=row[2],
        sha256=row[3],
        width=row[4],
        height=row[5],
        split=row[6],
        source_label=row[7],
        imported_at=row[8] or "",
    )


class ImagesMixin(StoreBase):
    """Images of a product, the queue over them and its priorities."""

    def add_image(
        self,
        product_id: int,
        *,
        path: str | Path,
        sha256: str,
        width: int,
        height: int,
        split: Split,
        source_label: str | None,
    ) -> tuple[ImageRecord, bool]:
        """Add an image; idempotent by (product, sha256): the bool says whether it is new."""
        entry = NewImage(str(path), sha256, width, height, split, source_label)
        return self.add_images(product_id, [entry])[0]

    def add_images(
        self, product_id: int, entries: Sequence[NewImage], *, author: str = "import"
    ) -> list[tuple[ImageRecord, bool]]:
        """Add a batch in one transaction, with ground-truth masks for the new images."""
        for entry in entries:
            check_literal(entry.split, Split, "split")
            if entry.width <= 0 or entry.height <= 0:
                raise ValueError(f"image {entry.path} has no pixels")
        results: list[tuple[ImageRecord, bool]] = []
        ground_truth: list[tuple[ImageRecord, NewMaskRevision]] = []
        now = timestamp()
        with self._write() as w:
            for entry in entries:
                path = os.path.abspath(entry.path)
                cursor = w.conn.execute(
                    "INSERT INTO images (product_id, path, name, sha256, width, height, split, "
                    "source_label, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (product_id, sha256) DO NOTHING",
                    (
                        product_id,
                        path,
                        os.path.basename(path),
                        entry.sha256,
                        entry.width,
                        entry.height,
                        entry.split,
                        entry.source_label,
                        now,
                    ),
                )
                created = cursor.rowcount == 1
                row = w.conn.execute(
                    f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ? AND sha256 = ?",
                    (product_id, entry.sha256),
                ).fetchone()
                record = _image(row)
                queued = {r.id for r, _ in ground_truth}  # a duplicate file in this batch
                if (
                    entry.ground_truth_mask is not None
                    and record.id not in queued
                    and (created or not self._has_source(w.conn, record.id, "ground_truth"))
                ):
                    truth = NewMaskRevision(
                        record.id, entry.ground_truth_mask, "ground_truth", author
                    )
                    ground_truth.append((record, truth))
                results.append((record, created))
            w.add_masks(ground_truth, created_at=now)
        return results

    def update_image_path(self, image_id: int, path: str | Path) -> ImageRecord:
        """Point an image at its new location (same content, moved folder)."""
        absolute = os.path.abspath(path)
        with self._write() as w:
            w.conn.execute(
                "UPDATE images SET path = ?, name = ? WHERE id = ?",
                (absolute, os.path.basename(absolute), image_id),
            )
        return self.get_image(image_id)

    @staticmethod
    def _has_source(conn: sqlite3.Connection, image_id: int, source: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM mask_revisions WHERE image_id = ? AND source = ? LIMIT 1",
            (image_id, source),
        ).fetchone()
        return found is not None

    def get_image(self, image_id: int) -> ImageRecord:
        row = (
            self._db()
            .execute(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,))
            .fetchone()
        )
        if row is None:
            raise UserError(f"no image with id {image_id} in {self._path}")
        return _image(row)

    def find_image(self, product_id: int, sha256: str) -> ImageRecord | None:
        row = (
            self._db()
            .execute(
                f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ? AND sha256 = ?",
                (product_id, sha256),
            )
            .fetchone()
        )
        return _image(row) if row else None

    def list_images(
        self, product_id: int, *, split: Split | None = None, source_label: str | None = None
    ) -> list[ImageRecord]:
        sql = f"SELECT {_IMAGE_COLUMNS} FROM images WHERE product_id = ?"
        params: list[Any] = [product_id]
        if split is not None:
            sql += " AND split = ?"
            params.append(split)
        if source_label is not None:
            sql += " AND source_label = ?"
            params.append(source_label)
        rows = self._db().execute(sql + " ORDER BY id", params).fetchall()
        return [_image(r) for r in rows]

    def split_label_counts(self, product_id: int) -> dict[tuple[str, str | None], int]:
        rows = (
            self._db()
            .execute(
                "SELECT split, source_label, COUNT(*) FROM images WHERE product_id = ? "
                "GROUP BY split, source_label ORDER BY split, source_label",
                (product_id,),
            )
            .fetchall()
        )
        return {(r[0], r[1]): r[2] for r in rows}

    @staticmethod
    def _filters(product_id: int, flt: ImageFilter) -> tuple[str, list[Any]]:
        where = ["product_id = ?"]
        params: list[Any] = [product_id]
        if flt.review_state is not None:
            check_literal(flt.review_state, ReviewState, "review_state")
            where.append("reviewed = ?")
            params.append(1 if flt.review_state == "reviewed" else 0)
        if flt.predicted_anomalous is not None:
            where.append("latest_anomalous = ?")
            params.append(int(flt.predicted_anomalous))
        if flt.score_min is not None:
            where.append("latest_score >= ?")
            params.append(float(flt.score_min))
        if flt.score_max is not None:
            where.append("latest_score <= ?")
            params.append(float(flt.score_max))
        if flt.defect_type is not None:
            where.append("latest_defect_type = ?")
            params.append(flt.defect_type)
        if flt.conflict is not None:
            where.append("sync_conflict = ?")
            params.append(int(flt.conflict))
        return " AND ".join(where), params

    def query_images(
        self,
        product_id: int,
        flt: ImageFilter | None = None,
        *,
        order_by: ImageOrder = "priority",
        limit: int | None = None,
        offset: int = 0,
        **keywords: Any,
    ) -> list[ImageRow]:
        """The review queue, filtered (``flt``, or its fields as keywords) and sorted in SQL;
        ``priority`` is the active-learning order (highest first, images without one last).
        """
        check_literal(order_by, ImageOrder, "order_by")
        where, params = self._filters(product_id, _filter(flt, keywords))
        sql = f"SELECT {_ROW_COLUMNS} FROM images WHERE {where} ORDER BY {_ORDERS[order_by]}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else int(limit), int(offset)]
        rows = self._db().execute(sql, params).fetchall()
        return [
            ImageRow(
                image=_image(r),
                score=r[9],
                anomalous=None if r[10] is None else bool(r[10]),
                review_verdict=r[11],
                defect_type=r[12],
                priority=r[13],
                priority_reason=r[14],
                conflict=bool(r[15]),
            )
            for r in rows
        ]

    def count_images(
        self, product_id: int, flt: ImageFilter | None = None, **keywords: Any
    ) -> int:
        where, params = self._filters(product_id, _filter(flt, keywords))
        return int(
            self._db().execute(f"SELECT COUNT(*) FROM images WHERE {where}", params).fetchone()[0]
        )

    def set_priorities(
        self,
        product_id: int,
        priorities: Mapping[int, float],
        reasons: Mapping[int, str] | None = None,
    ) -> None:
        """Replace the product's whole queue order (higher priority is reviewed first) and
        the reason each image is where it is (shown in the review list)."""
        reasons = reasons or {}
        items = [(int(k), float(v), reasons.get(k)) for k, v in priorities.items()]
        with self._write() as w:
            w.conn.execute("DELETE FROM queue_priorities WHERE product_id = ?", (product_id,))
            w.conn.execute(
                "UPDATE images SET priority = NULL, priority_reason = NULL "
                "WHERE product_id = ? AND priority IS NOT NULL",
                (product_id,),
            )
            before = w.conn.total_changes
            w.conn.executemany(
                "UPDATE images SET priority = ?, priority_reason = ? "
                "WHERE id = ? AND product_id = ?",
                [(p, r, i, product_id) for i, p, r in items],
            )
            if w.conn.total_changes - before != len(items):
                raise ValueError("set_priorities got image ids that are not in this product")
            w.conn.executemany(
                "INSERT INTO queue_priorities (image_id, product_id, priority, reason) "
                "VALUES (?, ?, ?, ?)",
                [(i, product_id, p, r) for i, p, r in items],
            )

    def get_priorities(self, product_id: int) -> dict[int, float]:
        rows = (
            self._db()
            .execute(
                "SELECT image_id, priority FROM queue_priorities WHERE product_id = ?",
                (product_id,),
            )
            .fetchall()
        )
        return {r[0]: r[1] for r in rows}
