"""``bench hostile``: memory and time to refuse hostile bundles under 10 MB.

Each bundle is crafted with correct manifest hashes (:func:`write_bundle`), so the
attack reaches the checks, and refused by a fresh ``iad-workstation`` process whose
peak resident memory is read with ``getrusage(RUSAGE_CHILDREN)`` by a wrapper process
of its own (one wrapper per case, so the maximum is that case's):

* ``feedback-bomb`` / ``model-bomb`` / ``weights-bomb``: a member of zeros deflated
  about 1000-fold (``--expand`` MiB, 2048 by default: a 2 MB file that inflates to
  2 GiB), in a feedback bundle, a model version bundle and an offline weight bundle;
* ``mask-50000``: a 2 KB mask array whose header declares 50000 x 50000 pixels;
* ``png-19999``: an image whose PNG header declares 19999 x 19999 pixels;
* ``near-limit``: the image of a real bundle replaced by ``--near`` MiB (400 by default)
  that deflate about 40-fold: a 10 MB file under every directory check, so the member
  is read whole and refused only at its header (the most memory a refusal can take);
* ``baseline``: ``iad-workstation --version`` (the interpreter and the imports).

Expected: every refusal exits 2 with one line, far below 1 GB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

from workstation.bench.scratch import emit, in_scratch

MANIFEST = "manifest.json"
_WRAPPER = (
    "import resource, subprocess, sys, json; "
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
    "done.returncode, done.stderr.strip().splitlines()[-1:]]))"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hostile", help="memory to refuse hostile bundles")
    parser.add_argument("--expand", type=int, default=2048, help="bomb size in MiB (2048)")
    parser.add_argument(
        "--near", type=int, default=400, help="near-limit image member in MiB (400)"
    )
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder, removed)")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers as JSON")
    parser.set_defaults(handler=run)


def write_bundle(
    out: Path,
    manifest: dict[str, Any],
    members: dict[str, bytes],
    *,
    listed_key: str = "members",
    compress: set[str] | frozenset[str] = frozenset(),
    sizes: dict[str, int] | None = None,
) -> Path:
    """A zip holding ``members`` and a manifest that lists each with its right sha256
    and size (``sizes`` overrides a declared size), as a hostile tool would make it."""
    listed = [
        {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "size": (sizes or {}).get(n, len(d))}
        for n, d in members.items()
    ]
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            kind = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=kind)
        archive.writestr(MANIFEST, json.dumps({**manifest, listed_key: listed}))
    return out


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, members other than the manifest) of a bundle."""
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
        members = {n: archive.read(n) for n in archive.namelist() if n != MANIFEST}
    return manifest, members


def _streamed(
    out: Path,
    manifest: dict[str, Any],
    key: str,
    member: str,
    mib: int,
    chunk: bytes,
    others: dict[str, bytes] | None = None,
) -> Path:
    """A bundle whose ``member`` is ``chunk`` (1 MiB) ``mib`` times, deflated while
    streaming, beside ``others`` (stored); the manifest lists all with right hashes."""
    digest = hashlib.sha256()
    listed = [
        {"path": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for n, d in (others or {}).items()
    ]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in (others or {}).items():
            archive.writestr(name, data, compress_type=zipfile.ZIP_STORED)
        with archive.open(member, "w", force_zip64=True) as handle:
            for _ in range(mib):
                handle.write(chunk)
                digest.update(chunk)
        listed.append({"path": member, "sha256": digest.hexdigest(), "size": mib * len(chunk)})
        archive.writestr(MANIFEST, json.dumps({**manifest, key: listed}))
    return out


def _bomb(out: Path, manifest: dict[str, Any], member: str, mib: int, key: str) -> Path:
    """A bundle whose ``member`` is ``mib`` MiB of zeros (deflate: about 1000-fold)."""
    return _streamed(out, manifest, key, member, mib, bytes(1 << 20))


def _near_limit(work: Path, mib: int) -> Path:
    """The real bundle with its image replaced by ``mib`` MiB that deflate about 40-fold:
    under every directory check, so it is read, and refused only at its header."""
    manifest, members = read_bundle(work / "real.zip")
    image = next(n for n in members if n.startswith("images/"))
    del members[image]
    chunk = os.urandom(24 << 10) + bytes((1 << 20) - (24 << 10))
    return _streamed(work / "near.zip", manifest, "members", image, mib, chunk, members)


def _png_header(side: int) -> bytes:
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + header + crc + end


def _feedback_cases(work: Path) -> tuple[Path, dict[str, Path]]:
    """A station, a real one-image bundle, and the hostile variants of it."""
    from workstation.bench.sync import PRODUCT, build_station
    from workstation.store.repository import Store
    from workstation.sync.feedback import export_feedback

    source = build_station(work / "source", 1, 1, 32)
    with Store.open(source) as store:
        real = export_feedback(store, PRODUCT, work / "real.zip").path
    station = work / "station" / "s.sqlite"
    with Store.open(station) as store:
        store.create_product(PRODUCT)
    manifest, members = read_bundle(real)
    mask = next(n for n in members if n.startswith("masks/"))
    image = next(n for n in members if n.startswith("images/"))
    header = struct.pack("<8sII", b"IADMASK1", 50_000, 50_000) + zlib.compress(bytes(2048))
    cases = {
        "mask-50000": write_bundle(work / "mask.zip", manifest, {**members, mask: header}),
        "png-19999": write_bundle(
            work / "png.zip", manifest, {**members, image: _png_header(19_999)}
        ),
    }
    return station, cases


def _measure(argv: list[str]) -> dict[str, object]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "workstation", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_kib, code, last = json.loads(done.stdout)
    return {
        "peak_rss_mb": peak_kib / 1024,
        "exit_code": code,
        "seconds": time.perf_counter() - started,
        "line": (last or [""])[0][:160],
    }


def bench_hostile(work: Path, expand: int, near_mib: int) -> dict[str, dict[str, object]]:
    station, cases = _feedback_cases(work)
    feedback, _ = read_bundle(work / "real.zip")
    model = {
        "format": "iad-workstation model version",
        "schema": 1,
        "product": feedback["product"],
        "version": "adapter-1",
        "kind": "adapter",
        "station": "0123abcd",
        "files_sha256": "0" * 64,
    }
    weights = {"format": 1, "name": "bomb-dinov2", "kind": "dinov2"}
    bombs = {
        "feedback-bomb": _bomb(work / "fb.zip", feedback, "images.jsonl", expand, "members"),
        "model-bomb": _bomb(work / "mb.zip", model, "files/weights.bin", expand, "members"),
        "weights-bomb": _bomb(work / "wb.zip", weights, "model.safetensors", expand, "files"),
    }
    db = ["--db", str(station)]
    runs = {"baseline": _measure(["--version"])}
    near = _near_limit(work, near_mib)
    for name, path in {
        **cases,
        "feedback-bomb": bombs["feedback-bomb"],
        "near-limit": near,
    }.items():
        runs[name] = {
            "bundle_mb": path.stat().st_size / 1e6,
            **_measure([*db, "sync", "import", str(path)]),
        }
    for name in ("model-bomb", "weights-bomb"):
        path = bombs[name]
        runs[name] = {
            "bundle_mb": path.stat().st_size / 1e6,
            **_measure([*db, "models", "install", str(path)]),
        }
    return runs


def run(args: argparse.Namespace) -> int:
    if args.expand < 2:
        from workstation.core.errors import UserError

        raise UserError("bench hostile needs --expand >= 2 (MiB)")
    runs = in_scratch(
        args.workdir, "iad-bench-hostile-", lambda w: bench_hostile(w, args.expand, args.near)
    )
    head = f"{'case':<14} {'bundle MB':>9} {'peak RSS MB':>11} {'exit':>4} {'s':>6}  line"
    return emit(
        [head]
        + [
            f"{name:<14} {row.get('bundle_mb', 0.0):>9.3f} {row['peak_rss_mb']:>11.1f} "
            f"{row['exit_code']:>4} {row['seconds']:>6.2f}  {row['line']}"
            for name, row in runs.items()
        ],
        runs,
        args.json,
    )
