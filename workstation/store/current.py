"""The current value of an image: which of its revisions count, when several stations wrote.

Revisions are append-only and may arrive from other stations (``iad-workstation sync``)
out of order, so "the newest" cannot mean the highest local row id: two stations holding
the same revisions would then disagree. The rule, the same on every station:

* the newest revision is the one with the latest ``created_at`` (UTC ISO text, compared
  as text), ties broken by the higher station id, then by the higher id at that station;
  a row made here has this store's station id and its own id (see schema ``_v4_sync``);
* an image's current verdict is its newest review's, ``reviewed`` says whether any review
  is decisive, its defect type is the newest explanation's (when that says anomalous);
* a *conflict* is two decisive reviews of the image from different stations, with
  different verdicts, neither of which had seen the other (``reviews.seen``), where one
  of them is the newest decisive review. The newest still wins; the image is flagged
  (``images.sync_conflict``) so that an inspector decides, and their review, which sees
  both, clears the flag. Nothing is dropped.

Clock skew between stations moves which revision wins; keep the stations on NTP.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

NEWEST_FIRST = "created_at DESC, COALESCE(origin_station, ?) DESC, COALESCE(origin_id, id) DESC"
"""ORDER BY clause of the rule; its one parameter is this store's station id."""
DECISIVE_VERDICTS = ("accepted", "normal", "anomalous")
_DECISIVE_SQL = "verdict IN ('accepted', 'normal', 'anomalous')"


def review_key(station: str, origin_id: int) -> str:
    """The global name of a revision: ``<station uuid>:<id at that station>``."""
    return f"{station}:{origin_id}"


def seen_keys(conn: sqlite3.Connection, image_id: int) -> list[str]:
    """Keys of the other stations' decisive reviews of the image present in this store."""
    rows = conn.execute(
        "SELECT origin_station, origin_id FROM reviews WHERE image_id = ? "
        f"AND origin_station IS NOT NULL AND {_DECISIVE_SQL} ORDER BY origin_station, origin_id",
        (image_id,),
    ).fetchall()
    return [review_key(station, origin_id) for station, origin_id in rows]


def _has_conflict(conn: sqlite3.Connection, image_id: int, station: str) -> bool:
    rows = conn.execute(
        "SELECT verdict, COALESCE(origin_station, ?), COALESCE(origin_id, id), seen "
        f"FROM reviews WHERE image_id = ? AND {_DECISIVE_SQL} ORDER BY {NEWEST_FIRST}",
        (station, image_id, station),
    ).fetchall()
    if len({row[1] for row in rows}) < 2:
        return False
    verdict, winner_station, winner_id, winner_seen = rows[0]
    winner_key = review_key(winner_station, winner_id)
    saw = set(json.loads(winner_seen or "[]"))
    for other_verdict, other_station, other_id, other_seen in rows[1:]:
        if other_verdict == verdict or other_station == winner_station:
            continue
        if review_key(other_station, other_id) in saw:
            continue
        if winner_key not in set(json.loads(other_seen or "[]")):
            return True
    return False


def refresh_current(conn: sqlite3.Connection, image_ids: Iterable[int], station: str) -> None:
    """Recompute the ``images`` columns that mirror the current value (inside a write)."""
    for image_id in image_ids:
        review = conn.execute(
            f"SELECT verdict FROM reviews WHERE image_id = ? ORDER BY {NEWEST_FIRST} LIMIT 1",
            (image_id, station),
        ).fetchone()
        decisive = conn.execute(
            f"SELECT 1 FROM reviews WHERE image_id = ? AND {_DECISIVE_SQL} LIMIT 1", (image_id,)
        ).fetchone()
        explanation = conn.execute(
            "SELECT verdict, defect_type FROM explanation_revisions WHERE image_id = ? "
            f"ORDER BY {NEWEST_FIRST} LIMIT 1",
            (image_id, station),
        ).fetchone()
        defect = None
        if explanation is not None and explanation[0] == "anomalous":
            defect = explanation[1] or None
        conn.execute(
            "UPDATE images SET latest_review_verdict = ?, reviewed = ?, latest_defect_type = ?, "
            "sync_conflict = ? WHERE id = ?",
            (
                None if review is None else review[0],
                int(decisive is not None),
                defect,
                int(_has_conflict(conn, image_id, station)),
                image_id,
            ),
        )
