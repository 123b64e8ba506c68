"""Content-addressed array files: ``<blob dir>/ab/<sha256>.npy`` (or ``.mask``).

The address is the sha256 of the array itself (dtype, shape and bytes), so the same mask
saved twice is one file, whatever the file encoding. Binary masks (uint8 0/1) are stored
as ``.mask``: a 16-byte header (magic, height, width) and the zlib-compressed packed
bits, about 1/500 of the raw size and 100x faster to write than ``np.savez_compressed``.
Everything else (float maps) is a plain ``.npy``.

A file is written under a temporary name in its final folder, flushed to disk and renamed
into place, so a crash leaves either the whole file or a temp file, never half a blob.
Temp names carry the writer's process id, which lets :meth:`BlobStore.remove_stale_temps`
delete the leftovers of dead writers without touching a live writer's file.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from workstation.core.errors import UserError
from workstation.core.tempfiles import TEMP_PREFIX, create_temp, remove_stale, temp_files
from workstation.core.untrusted import limits

MASK_MAGIC = b"IADMASK1"
_MASK_HEADER = struct.Struct("<8sII")
_fsync = getattr(os, "fdatasync", os.fsync)


def store_blobs_dir(db_path: Path) -> Path:
    """``<name>.blobs/`` beside the store file at ``db_path``."""
    return db_path.parent / f"{db_path.stem}.blobs"


def store_images_dir(db_path: Path) -> Path:
    """``<name>.images/`` beside the store: files of images that arrived in a bundle."""
    return db_path.parent / f"{db_path.stem}.images"


def array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def _flush_file(path: Path) -> None:
    with open(path, "r+b") as handle:
        _fsync(handle.fileno())


def _is_binary_mask(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and array.ndim == 2 and int(array.max(initial=0)) <= 1


def mask_blob_shape(data: bytes) -> tuple[int, int]:
    """(height, width) from a mask blob's header, refused above the pixel limit before
    anything is inflated (a 2 KB file may declare 50000 x 50000)."""
    magic, height, width = _MASK_HEADER.unpack_from(data)
    if magic != MASK_MAGIC:
        raise ValueError("not a mask blob")
    if height * width > limits().image_pixels:
        raise ValueError(
            f"the mask declares {width}x{height} pixels, above the limit of "
            f"{limits().image_pixels} ([limits] max_image_megapixels)"
        )
    return height, width


def _read_mask_blob(data: bytes) -> np.ndarray:
    height, width = mask_blob_shape(data)
    need = (height * width + 7) // 8
    inflater = zlib.decompressobj()
    packed = inflater.decompress(data[_MASK_HEADER.size :], need)
    beyond = inflater.decompress(inflater.unconsumed_tail, 1)
    if len(packed) != need or beyond or not inflater.eof:
        raise ValueError(f"the mask's bits do not fit its {width}x{height} header")
    bits = np.frombuffer(packed, dtype=np.uint8)
    return np.unpackbits(bits, count=height * width).reshape(height, width)


def decode_blob(data: bytes, suffix: str) -> np.ndarray:
    """The array in a blob file's bytes (``suffix`` ``.mask`` or ``.npy``); raises
    ValueError, zlib.error or struct.error when the bytes are not such a file."""
    if suffix == ".mask":
        return _read_mask_blob(data)
    if suffix != ".npy":
        raise ValueError(f"not a blob file suffix: {suffix!r}")
    return np.load(io.BytesIO(data), allow_pickle=False)


class AtomicFiles:
    """Files written whole or not at all: temp names, one flush for all, then renames.

    Use as a context manager: :meth:`add` writes a temp file beside its final path; a
    clean exit flushes every temp file to disk (``fsync``) and renames them into place,
    an exception deletes them. Past :data:`SYNC_ALL_FROM` files one ``os.sync()``
    replaces the per-file flushes: thousands of small files (a feedback bundle's masks
    and images) then cost one disk flush instead of one each (10 ms apiece on a slow disk).
    """

    SYNC_ALL_FROM = 512

    def __init__(self, *, fsync: bool = True) -> None:
        self.fsync = fsync
        self._temps: list[tuple[Path, Path]] = []

    def add(self, final: Path, data: bytes) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = create_temp(final.parent, final.suffix)
        self._temps.append((temp, final))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        try:
            if kind is None:
                self.commit()
        finally:
            self.discard()

    def commit(self) -> None:
        """Flush every file written so far and rename it into place."""
        self._flush()
        while self._temps:
            temp, final = self._temps.pop(0)
            os.replace(temp, final)

    def discard(self) -> None:
        """Delete the temp files not renamed yet (after an error)."""
        for temp, _ in self._temps:
            temp.unlink(missing_ok=True)
        self._temps = []

    def _flush(self) -> None:
        temps = [temp for temp, _ in self._temps]
        if not self.fsync or not temps:
            return
        if len(temps) >= self.SYNC_ALL_FROM and hasattr(os, "sync"):
            os.sync()
        elif len(temps) == 1:
            _flush_file(temps[0])
        else:
            with ThreadPoolExecutor(min(16, len(temps))) as pool:
                list(pool.map(_flush_file, temps))


class BlobStore:
    """Arrays by content hash. Safe to share across threads and processes."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        # Flush each file to disk before its rename: survives a power cut, costs a few ms.
        self.fsync = fsync
        # The folder is made by the first write, so a path refused as a store leaves none.

    def _candidates(self, sha: str) -> tuple[Path, Path]:
        folder = self.root / sha[:2]
        return folder / f"{sha}.mask", folder / f"{sha}.npy"

    def path_of(self, sha: str) -> Path | None:
        for candidate in self._candidates(sha):
            if candidate.exists():
                return candidate
        return None

    def exists(self, sha: str) -> bool:
        return self.path_of(sha) is not None

    def put_array(self, array: np.ndarray) -> str:
        """Store ``array`` and return its sha256 (a no-op when the content is already there)."""
        return self.put_arrays_tracked([array])[0][0]

    def put_arrays_tracked(self, arrays: Iterable[np.ndarray]) -> list[tuple[str, Path | None]]:
        """Store several arrays; per array its sha256 and the file this call created (if any).

        Each array is encoded and written to its temp file as it comes (so ``arrays`` may
        be a generator of more than fits in memory), then all files are flushed to disk
        together and renamed: on a slow disk a batch costs little more than one file.
        """
        results: list[tuple[str, Path | None]] = []
        pending: set[str] = set()
        with AtomicFiles(fsync=self.fsync) as files:
            for array in arrays:
                array = np.ascontiguousarray(array)
                sha = array_sha256(array)
                if sha in pending or self.exists(sha):
                    results.append((sha, None))
                    continue
                final, data = self._encode(array, sha)
                files.add(final, data)
                pending.add(sha)
                results.append((sha, final))
        return results

    def _encode(self, array: np.ndarray, sha: str) -> tuple[Path, bytes]:
        if _is_binary_mask(array):
            header = _MASK_HEADER.pack(MASK_MAGIC, array.shape[0], array.shape[1])
            return self._candidates(sha)[0], header + zlib.compress(np.packbits(array).tobytes(), 1)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self._candidates(sha)[1], buffer.getvalue()

    def get_array(self, sha: str) -> np.ndarray:
        path = self.path_of(sha)
        if path is None:
            raise UserError(f"array {sha[:12]} is missing from {self.root}; the store is damaged")
        try:
            return decode_blob(path.read_bytes(), path.suffix)
        except (OSError, ValueError, zlib.error, struct.error) as exc:
            raise UserError(f"array file {path} is damaged ({exc})") from exc

    def delete(self, sha: str) -> None:
        for candidate in self._candidates(sha):
            candidate.unlink(missing_ok=True)

    def iter_blobs(self, *, newer_than: float | None = None) -> Iterator[str]:
        """Hashes of stored blobs, optionally only files modified after ``newer_than``."""
        for folder in self._folders():
            for entry in os.scandir(folder):
                if entry.name.startswith(TEMP_PREFIX) or not entry.is_file():
                    continue
                if newer_than is not None and entry.stat().st_mtime < newer_than:
                    continue
                yield entry.name.split(".", 1)[0]

    def temp_files(self) -> list[Path]:
        return [path for folder in self._folders() for path in temp_files(Path(folder))]

    def remove_stale_temps(self) -> int:
        """Delete temp files left by writers that died mid-write; return how many."""
        return sum(remove_stale(Path(folder)) for folder in self._folders())

    def _folders(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for entry in os.scandir(self.root):
            if entry.is_dir() and len(entry.name) == 2:
                yield entry.path
