"""The typed store: every read returns ``workstation.core`` values, every write commits at once.

One SQLite connection per thread (WAL lets the GUI thread read while a worker writes); the
``Store`` object itself is safe to share. Each public write is one ``BEGIN IMMEDIATE``
transaction, so a crash loses at most the call in flight and never leaves half of it.

Arrays live in the :class:`BlobStore` next to the database file. A blob is written inside
the write transaction that references it; since that transaction holds the write lock, a
blob that no row references while we hold the lock can only be the leftover of a crashed
writer, which is what lets :meth:`Store.collect_garbage` run safely on every open.

``Store`` is the one front callers use; its methods live by kind of record in the mixins
``products``, ``images``, ``revisions``, ``predictions``, ``registry``, ``thresholds``
and ``maintenance``, over the connections and writes of ``base.StoreBase``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from workstation.core.errors import UserError
from workstation.paths import expand_user
from workstation.store.db import is_read_only_error, migrate
from workstation.store.errors import describe_store_error
from workstation.store.maintenance import MaintenanceMixin
from workstation.store.predictions import PredictionsMixin
from workstation.store.registry import RegistryMixin
from workstation.store.revisions import RevisionsMixin
from workstation.store.rows import ImageRow, NewImage, NewMaskRevision, NewPrediction
from workstation.store.thresholds import ThresholdsMixin

__all__ = ["ImageRow", "NewImage", "NewMaskRevision", "NewPrediction", "Store"]


class Store(MaintenanceMixin, RegistryMixin, ThresholdsMixin, PredictionsMixin, RevisionsMixin):
    """The feedback store: products, images, revisions, predictions, models, rounds."""

    @classmethod
    def open(cls, path: Path | str, *, fsync_blobs: bool = True) -> Store:
        """Open (creating if needed) and migrate; clean what a crashed writer left behind.

        ``fsync_blobs=False`` skips flushing array files to disk before they are renamed
        into place: still safe against a crashed or killed process (the page cache
        survives), but a power cut could then leave a committed row whose array file is
        empty. It makes mask saves several times faster on slow disks.
        """
        path = expand_user(path).absolute()
        if path.is_dir():
            raise UserError(f"{path} is a folder; give the store's file name (e.g. store.sqlite)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the store folder {path.parent}: {exc}") from exc
        store = cls(path, fsync_blobs=fsync_blobs)
        try:
            migrate(store._db(), path)
        except sqlite3.OperationalError as exc:
            store.close()
            raise UserError(describe_store_error(exc, path)) from exc
        except sqlite3.DatabaseError as exc:
            store.close()
            raise UserError(f"{path} is not a workstation store ({exc})") from exc
        except BaseException:
            store.close()
            raise
        try:
            store.collect_garbage()
        except sqlite3.OperationalError as exc:
            # A read-only store can still be read (export, review); nobody could have
            # left garbage in it. The first write then fails with the boundary's message.
            if not is_read_only_error(exc):
                store.close()
                raise
        except BaseException:
            store.close()
            raise
        return store
