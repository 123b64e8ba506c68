"""Model predictions: one per image and model version, with its anomaly map as a blob.

Writing a prediction also updates the image's ``latest_score`` / ``latest_anomalous``,
which the review queue filters and sorts on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import Prediction
from workstation.store.base import StoreBase, timestamp
from workstation.store.rows import NewPrediction, from_row


def _prediction(row: Mapping[str, Any]) -> Prediction:
    return from_row(
        Prediction,
        row,
        anomalous=bool(row["anomalous"]),
        expert_scores=json.loads(row["expert_scores"]) if row["expert_scores"] else {},
        embedding=(
            None
            if row["embedding"] is None
            else np.frombuffer(row["embedding"], dtype=np.float16).astype(np.float32)
        ),
    )


def _expert_scores_json(scores: Mapping[str, float] | None) -> str | None:
    if not scores:
        return None
    values = {str(k): float(v) for k, v in scores.items()}
    if not all(np.isfinite(v) for v in values.values()):
        raise ValueError(f"expert scores must be finite numbers, got {values}")
    return json.dumps(values, sort_keys=True)


def _embedding_bytes(embedding: np.ndarray | None) -> bytes | None:
    if embedding is None:
        return None
    values = np.asarray(embedding, dtype=np.float32)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"an embedding must be a non-empty finite 1-D array, got {values.shape}")
    return values.astype(np.float16).tobytes()


class PredictionsMixin(StoreBase):
    """Record and read predictions and their maps."""

    def add_prediction(
        self,
        image_id: int,
        *,
        model_version: str,
        score: float,
        anomalous: bool,
        anomaly_map: np.ndarray | None,
    ) -> Prediction:
        """Record (or replace) this model version's prediction for the image."""
        entry = NewPrediction(image_id, model_version, score, anomalous, anomaly_map)
        return self.add_predictions([entry])[0]

    def add_predictions(self, entries: Sequence[NewPrediction]) -> list[Prediction]:
        """A batch of predictions in one transaction (one per image and model version)."""
        maps: list[np.ndarray] = []
        for entry in entries:
            if entry.anomaly_map is not None:
                array = np.asarray(entry.anomaly_map)
                if array.ndim != 2:
                    raise ValueError(f"an anomaly map must be 2-D, got {array.shape}")
                if array.dtype not in (np.float16, np.float32):
                    array = array.astype(np.float32)
                maps.append(array)
        # checked before the transaction, so a bad entry writes nothing at all
        extras = [
            (_expert_scores_json(e.expert_scores), _embedding_bytes(e.embedding)) for e in entries
        ]
        ids: list[int] = []
        with self._write() as w:
            shas = iter(w.put_blobs(maps))
            for entry, (expert_scores, embedding) in zip(entries, extras, strict=True):
                blob = None if entry.anomaly_map is None else next(shas)
                now = timestamp()
                w.conn.execute(
                    "INSERT INTO predictions (image_id, model_version, score, anomalous, "
                    "map_blob, created_at, expert_scores, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (image_id, model_version) DO UPDATE SET score = excluded.score, "
                    "anomalous = excluded.anomalous, map_blob = excluded.map_blob, "
                    "created_at = excluded.created_at, expert_scores = excluded.expert_scores, "
                    "embedding = excluded.embedding",
                    (
                        entry.image_id,
                        entry.model_version,
                        float(entry.score),
                        int(bool(entry.anomalous)),
                        blob,
                        now,
                        expert_scores,
                        embedding,
                    ),
                )
                found = w.conn.execute(
                    "SELECT id FROM predictions WHERE image_id = ? AND model_version = ?",
                    (entry.image_id, entry.model_version),
                ).fetchone()
                ids.append(found[0])
                w.conn.execute(
                    "UPDATE images SET latest_score = ?, latest_anomalous = ? WHERE id = ?",
                    (float(entry.score), int(bool(entry.anomalous)), entry.image_id),
                )
        rows = {r["id"]: r for r in self._rows_by_ids("predictions", ids)}
        return [_prediction(rows[i]) for i in ids]

    def _rows_by_ids(self, table: str, ids: Sequence[int]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            found += self._query(f"SELECT * FROM {table} WHERE id IN ({marks})", chunk)
        return found

    def latest_prediction(
        self, image_id: int, *, model_version: str | None = None
    ) -> Prediction | None:
        sql = "SELECT * FROM predictions WHERE image_id = ?"
        params: list[Any] = [image_id]
        if model_version is not None:
            sql += " AND model_version = ?"
            params.append(model_version)
        row = self._one(sql + " ORDER BY created_at DESC, id DESC LIMIT 1", params)
        return _prediction(row) if row else None

    def predicted_image_ids(self, product_id: int, model_version: str) -> set[int]:
        rows = (
            self._db()
            .execute(
                "SELECT p.image_id FROM predictions p JOIN images i ON i.id = p.image_id "
                "WHERE p.model_version = ? AND i.product_id = ?",
                (model_version, product_id),
            )
            .fetchall()
        )
        return {r[0] for r in rows}

    def scores_by_version(self, image_ids: Sequence[int]) -> dict[str, dict[int, float]]:
        """``{model version: {image id: score}}``, each version's newest score per image."""
        out: dict[str, dict[int, float]] = {}
        ids = list(image_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = self._query(
                "SELECT image_id, model_version, score FROM predictions "
                f"WHERE image_id IN ({marks}) ORDER BY created_at, id",
                chunk,
            )
            for row in rows:  # oldest first: a newer score of the same version wins
                out.setdefault(row["model_version"], {})[int(row["image_id"])] = row["score"]
        return out

    def load_map(self, prediction: Prediction) -> np.ndarray:
        if prediction.map_blob is None:
            raise UserError(f"prediction {prediction.id} was saved without an anomaly map")
        return self.blobs.get_array(prediction.map_blob).astype(np.float32, copy=False)
