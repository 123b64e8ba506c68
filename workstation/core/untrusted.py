"""Checking what arrives from outside the station (bundles) before anything touches disk.

Why one module: a feedback bundle, a model version bundle and an offline weight bundle
are all zips handed over on a carried drive or a shared folder, so each is a trust
boundary. Every reader of them goes through the checks here: strict patterns for
every field that becomes a path (hashes, names, member paths), typed and bounded
fields, sizes bounded while decompressing, and joins that are resolved and then
verified to lie inside their folder. A refusal is one line,
``this bundle is malformed: <field>: <why>``, with the CLI's exit code 2.

The limits are set once per process from the ``[limits]`` settings
(:func:`set_limits`); the defaults are far above what a plant produces, and the
setting raises them where a plant's data really is that large.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

from workstation.core.errors import UserError

MiB = 1 << 20
GiB = 1 << 30
MAX_ID = (1 << 63) - 1
"""SQLite's largest integer: any id or count above it cannot be stored."""
ECHO_CHARS = 60
"""Bundle text echoed in a message is cut to this many characters."""
_CHUNK = 1 << 20

SHA256 = re.compile(r"[0-9a-f]{64}")
STATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
STRICT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""Version and model names: letters, digits, ``. _ -``, starting with a letter or digit."""
_MEMBER_PART = re.compile(r"[A-Za-z0-9_+=@,-][A-Za-z0-9._+=@,-]{0,254}")
_BAD_NAME_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")
"""Separators and control characters. Other characters a file system refuses (``:`` on
Windows) are left to :func:`inside`, which every join goes through: plant file names
such as ``2026-12-03T10:00:00.png`` stay importable."""
MAX_NAME_CHARS = 200
MAX_MEMBER_DEPTH = 16
MAX_MEMBER_CHARS = 1024


@dataclass(frozen=True)
class Limits:
    """What a bundle and an image may hold; raised by the ``[limits]`` settings."""

    member_bytes: int = 16 * GiB
    """One member of a bundle (a weight file, an image), decompressed."""
    total_bytes: int = 256 * GiB
    """All members of one bundle together, decompressed."""
    table_bytes: int = 64 * MiB
    """A manifest or table that is parsed in memory (JSON, JSON lines): parsed rows take
    about five times their text, and 64 MiB holds some 200,000 revisions."""
    members: int = 2_000_000
    compression_ratio: int = 50
    """Decompressed / compressed size of a member over 1 MiB, and of the whole bundle:
    deflate reaches about 1000 only on data built to do so (a zip bomb); a plant's
    tables compress about 5-fold, its images and masks not at all. It also bounds what
    a small file can unpack to (a 10 MB bundle: at most 500 MB)."""
    image_pixels: int = 100_000_000
    """Width x height of an image or mask, read from its header before decoding."""

    def __post_init__(self) -> None:
        for name in ("member_bytes", "total_bytes", "table_bytes", "members"):
            if getattr(self, name) < 1:
                raise UserError(f"limits: {name} must be at least 1")
        if self.compression_ratio < 2 or self.image_pixels < 1:
            raise UserError("limits: compression_ratio must be >= 2 and image_pixels >= 1")


_current = Limits()


def set_limits(limits: Limits) -> None:
    """Use ``limits`` in this process from now on (called once the settings are read)."""
    global _current
    _current = limits


def limits() -> Limits:
    return _current


def with_limits(**changes: int) -> Limits:
    """The current limits with some changed (tests, benches)."""
    return replace(_current, **changes)


class MalformedBundle(UserError):
    """A bundle whose content breaks a rule: refused whole, nothing written."""

    def __init__(self, field: str, why: str, *, source: str = "") -> None:
        where = f" ({clip(source, 160)})" if source else ""
        super().__init__(
            f"this bundle is malformed: {clip(field, 120)}: {why}{where}; nothing was written"
        )
        self.field = field
        self.why = why


def echo(value: object, limit: int = ECHO_CHARS) -> str:
    """A value as it may appear in a one-line message: quoted, escaped, cut short."""
    return clip(repr(value), limit)


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """Text for a one-line message: control characters escaped, cut to ``limit``."""
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) > limit:
        return f"{text[: limit - 1]}… ({len(text)} chars)"
    return text


# ------------------------------------------------------------------------------ fields
def require(record: dict[str, Any], key: str, field: str) -> Any:
    if not isinstance(record, dict):
        raise MalformedBundle(field, "is not a JSON object")
    if key not in record:
        raise MalformedBundle(f"{field}.{key}", "is missing")
    return record[key]


def text(value: Any, field: str, *, max_chars: int = 100_000, optional: bool = False) -> Any:
    """A string (or None when ``optional``) of at most ``max_chars`` characters."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MalformedBundle(field, f"must be text, got {type(value).__name__}")
    if len(value) > max_chars:
        raise MalformedBundle(field, f"is {len(value)} characters long (at most {max_chars})")
    if "\x00" in value:
        raise MalformedBundle(field, "holds a NUL character")
    return value


def integer(value: Any, field: str, *, low: int = 0, high: int = MAX_ID) -> int:
    """An int (never a bool, float or string) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedBundle(field, f"must be a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise MalformedBundle(field, f"{echo(value, 30)} is outside {low}..{high}")
    return value


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise MalformedBundle(field, f"must be true or false, got {type(value).__name__}")
    return value


def texts(value: Any, field: str, *, max_items: int = 10_000, max_chars: int = 10_000) -> list[str]:
    if not isinstance(value, list) or len(value) > max_items:
        raise MalformedBundle(field, f"must be a list of at most {max_items} texts")
    return [text(v, f"{field}[{n}]", max_chars=max_chars) for n, v in enumerate(value)]


def sha256(value: Any, field: str) -> str:
    """Exactly 64 lowercase hex digits (a content hash that names a file)."""
    if not isinstance(value, str) or not SHA256.fullmatch(value):
        raise MalformedBundle(field, f"must be 64 lowercase hex digits, got {echo(value)}")
    return value


def pattern(value: Any, field: str, rule: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not rule.fullmatch(value):
        raise MalformedBundle(field, f"{echo(value)} is not {what}")
    return value


def strict_name(value: Any, field: str) -> str:
    return pattern(value, field, STRICT_NAME, "a name of letters, digits, . _ - (up to 100)")


def station(value: Any, field: str) -> str:
    return pattern(value, field, STATION, "a station id (letters, digits, -)")


def name_problem(value: object, *, max_chars: int = MAX_NAME_CHARS) -> str | None:
    """Why ``value`` cannot be one folder or file name (None when it can)."""
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__}"
    if not value or len(value) > max_chars:
        return f"must be 1 to {max_chars} characters, got {len(value)}"
    if _BAD_NAME_CHARS.search(value):
        return f"{echo(value)} holds a path separator or control character"
    if (
        value in (".", "..")
        or value.startswith(".")
        or value != value.strip()
        or (value.endswith("."))
    ):
        return f"{echo(value)} starts with a dot or space, or ends with a dot or space"
    return None


def name(value: Any, field: str, *, optional: bool = False) -> Any:
    """A product, label or file name: one path component, printable, bounded."""
    if value is None and optional:
        return None
    problem = name_problem(value)
    if problem is not None:
        raise MalformedBundle(field, problem)
    return value


def member_path(value: Any, field: str = "member path") -> str:
    """A zip member name: relative, ``/``-separated, every part a plain file name."""
    if not isinstance(value, str) or not value or len(value) > MAX_MEMBER_CHARS:
        raise MalformedBundle(field, f"{echo(value)} is not a member path")
    parts = value.split("/")
    if len(parts) > MAX_MEMBER_DEPTH or not all(_MEMBER_PART.fullmatch(p) for p in parts):
        raise MalformedBundle(field, f"refusing the unsafe path {echo(value)}")
    return value


# ------------------------------------------------------------------------------ paths
def inside(root: Path, *parts: str) -> Path:
    """``root / parts``, resolved and verified to lie inside ``root`` (symlinks followed).

    Raises :class:`UserError` when any part is absolute, holds ``..`` or a link leads
    out: a name that came from outside may never place a file elsewhere.
    """
    base = Path(root).resolve()
    for part in parts:
        if not part or PurePosixPath(part).is_absolute() or Path(part).is_absolute():
            raise UserError(f"refusing the path {echo(part)} under {root}: it is absolute")
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise UserError(f"refusing the path {echo('/'.join(parts))}: it leads out of {root}")
    return target


# ------------------------------------------------------------------------------ zips
def open_zip(path: Path, field: str = "zip") -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        OverflowError,
        struct.error,
        NotImplementedError,
    ) as exc:
        raise MalformedBundle(
            field, f"not a whole zip file (truncated or corrupt: {clip(str(exc))})"
        ) from None


def check_directory(archive: zipfile.ZipFile, *, limits: Limits | None = None) -> None:
    """The zip's own declarations within the limits, before a byte is decompressed."""
    rules = limits or _current
    infos = archive.infolist()
    if len(infos) > rules.members:
        raise MalformedBundle("members", f"{len(infos)} members (at most {rules.members})")
    total = 0
    for info in infos:
        declared = info.file_size
        total += declared
        if declared > rules.member_bytes:
            raise MalformedBundle(
                info.filename,
                f"declares {declared} bytes (at most {rules.member_bytes}: "
                "[limits] max_bundle_member_mb)",
            )
        if declared > MiB and declared > rules.compression_ratio * max(info.compress_size, 1):
            raise MalformedBundle(
                info.filename,
                f"expands {declared // max(info.compress_size, 1)}-fold "
                f"(at most {rules.compression_ratio}: [limits] max_compression_ratio); "
                "a zip bomb is refused",
            )
        if info.flag_bits & 0x1:
            raise MalformedBundle(info.filename, "is encrypted")
    if total > rules.total_bytes:
        raise MalformedBundle(
            "members",
            f"expand to {total} bytes (at most {rules.total_bytes}: [limits] max_bundle_total_mb)",
        )
    packed = max(sum(info.compress_size for info in infos), 1)
    if total > MiB and total > rules.compression_ratio * packed:
        raise MalformedBundle(
            "members",
            f"expand {total // packed}-fold together (at most {rules.compression_ratio}: "
            "[limits] max_compression_ratio); a zip bomb is refused",
        )


def stream(archive: zipfile.ZipFile, member: str, most: int) -> Iterator[bytes]:
    """A member's bytes in chunks; refused as soon as more than ``most`` come out, and
    when the compressed data is corrupt (one line, never a traceback)."""
    seen = 0
    try:
        with archive.open(member) as handle:
            while chunk := _read(handle):
                seen += len(chunk)
                if seen > most:
                    raise MalformedBundle(member, f"holds more than {most} bytes")
                yield chunk
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        NotImplementedError,
        RuntimeError,
        ValueError,
        struct.error,
    ) as exc:
        raise MalformedBundle(member, f"corrupt compressed data ({echo(str(exc))})") from None


def _read(handle: IO[bytes]) -> bytes:
    return handle.read(_CHUNK)


def read_bounded(archive: zipfile.ZipFile, member: str, most: int) -> bytes:
    """A whole member (for tables and small files), at most ``most`` bytes."""
    return b"".join(stream(archive, member, most))


@dataclass(frozen=True)
class Listed:
    """A member as its manifest lists it."""

    path: str
    sha256: str
    size: int


def listed_members(value: Any, field: str, *, limits: Limits | None = None) -> list[Listed]:
    """A manifest's member list: typed entries, safe paths, bounded and unique."""
    rules = limits or _current
    if not isinstance(value, list) or len(value) > rules.members:
        raise MalformedBundle(field, f"must be a list of at most {rules.members} entries")
    out: list[Listed] = []
    total = 0
    for n, item in enumerate(value):
        where = f"{field}[{n}]"
        entry = Listed(
            member_path(require(item, "path", where), f"{where}.path"),
            sha256(require(item, "sha256", where), f"{where}.sha256"),
            integer(require(item, "size", where), f"{where}.size", high=rules.member_bytes),
        )
        total += entry.size
        out.append(entry)
    if total > rules.total_bytes:
        raise MalformedBundle(field, f"declare {total} bytes (at most {rules.total_bytes})")
    if len({e.path for e in out}) != len(out):
        raise MalformedBundle(field, "lists a member twice")
    return out


def verified_chunks(archive: zipfile.ZipFile, entry: Listed) -> Iterator[bytes]:
    """A listed member's bytes, refused while streaming once it outgrows its declared
    size, and at the end when its size or sha256 differs from the manifest."""
    digest = hashlib.sha256()
    size = 0
    for chunk in stream(archive, entry.path, entry.size):
        digest.update(chunk)
        size += len(chunk)
        yield chunk
    if size != entry.size or digest.hexdigest() != entry.sha256:
        raise MalformedBundle(
            entry.path,
            "does not match the sha256 and size in its manifest (changed or damaged on "
            "the way); copy the bundle again or make a new one",
        )


def read_verified(archive: zipfile.ZipFile, entry: Listed) -> bytearray:
    """A listed member in memory (filled in place: its size is known and verified, so
    the bytes are never held twice)."""
    data = bytearray(entry.size)
    view = memoryview(data)
    done = 0
    for chunk in verified_chunks(archive, entry):
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return data


def verify_member(archive: zipfile.ZipFile, entry: Listed) -> None:
    for _ in verified_chunks(archive, entry):
        pass
