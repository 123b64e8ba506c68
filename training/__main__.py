"""``python -m training --manifest M --out DIR``: run one round, JSON-lines progress on stdout.

The output folder appears only when the round is complete: everything is written into a
temporary sibling folder that is renamed at the end, so killing the process (the app's
cancel) leaves nothing that looks like a finished model. Exit codes: 0 done, 2 the round
could not run (message in the ``error`` event), 1 unexpected failure.

``torchrun --nproc_per_node N -m training ...`` runs the same round as N processes
(``training.distributed``): rank 0 stages, publishes and reports; the others train their
share and write nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from training import distributed
from training.contract import ContractError, ProgressEvent, RoundManifest
from workstation.core import kinds

METRICS_FILE = "metrics.json"
MANIFEST_COPY = "manifest.json"


def emit(event: ProgressEvent) -> None:
    """Progress lines come from rank 0 alone: torchrun's ranks share one stdout, and the app
    reads it as the round's single voice. Another rank's error goes to stderr (the log)."""
    launched = distributed.World.from_env()
    if launched.is_main:
        print(event.to_line(), flush=True)
    elif event.event == "error":
        print(f"rank {launched.rank}: {event.message}", file=sys.stderr, flush=True)


def resolve_device(preference: str) -> str:
    from workstation.device import resolve_device as resolve

    return resolve(preference)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def run_kind(manifest: RoundManifest, out: Path, device: str) -> dict[str, object]:
    """The kind's own round (``workstation.core.kinds``), imported only now."""
    return kinds.get(manifest.kind).run_round()(manifest, out, device=device, emit=emit)


def with_oom_retry(
    manifest: RoundManifest, device: str, attempt: Callable[[RoundManifest], dict[str, object]]
) -> dict[str, object]:
    """On CUDA out-of-memory, halve the batch (doubling accumulation) until batch 1 fails."""
    while True:
        try:
            return attempt(manifest)
        except Exception as exc:
            # Under DDP a rank that retried alone would leave the others waiting for it.
            if (
                not device.startswith("cuda")
                or not is_out_of_memory(exc)
                or distributed.world().enabled
            ):
                raise
            import torch

            torch.cuda.empty_cache()
            params = dict(manifest.hyperparameters)
            batch = int(params.get("batch_size", 8))
            if batch <= 1:
                raise MemoryError(
                    "the GPU ran out of memory even with batch size 1; close other GPU "
                    "programs, lower the image size, or run the round on the CPU "
                    '(set [device] preference = "cpu")'
                ) from exc
            params["batch_size"] = batch // 2
            # Only kinds that accumulate gradients keep the effective batch; the others'
            # strict hyperparameters would refuse the key.
            if "grad_accumulation" in fields_of(manifest):
                params["grad_accumulation"] = int(params.get("grad_accumulation", 1)) * 2
            emit(
                ProgressEvent(
                    "start", message=f"out of GPU memory; retrying with batch {batch // 2}"
                )
            )
            manifest = RoundManifest(**{**manifest.__dict__, "hyperparameters": params})


def fields_of(manifest: RoundManifest) -> set[str]:
    """The names the manifest kind's hyperparameters dataclass accepts."""
    hyper = kinds.get(manifest.kind).implementation().Hyperparameters
    return {f.name for f in dataclasses.fields(hyper)}


def run(manifest_path: Path, out: Path, device_preference: str = "auto") -> int:
    from workstation.core.errors import UserError

    if out.exists():
        emit(ProgressEvent("error", message=f"output folder {out} already exists"))
        return 2
    try:
        manifest = RoundManifest.load(manifest_path)
        device = resolve_device(device_preference)
        world, device = distributed.init_from_env(device)
    except (ContractError, UserError) as exc:
        emit(ProgressEvent("error", message=str(exc)))
        return 2
    try:
        if not world.is_main:
            return _follow(manifest, out, device)
        return _lead(manifest, out, device)
    finally:
        distributed.shutdown()


def _follow(manifest: RoundManifest, out: Path, device: str) -> int:
    """A rank other than 0 trains its share of every batch and writes nothing: the round
    functions leave saving, judging and deciding to rank 0 (``out`` is never touched)."""
    from workstation.core.errors import UserError

    try:
        run_kind(manifest, out, device)
    except (UserError, ContractError, MemoryError) as exc:
        emit(ProgressEvent("error", message=str(exc)))
        return 2
    except BaseException as exc:
        emit(ProgressEvent("error", message=f"{type(exc).__name__}: {exc}"))
        return 1
    return 0


def _lead(manifest: RoundManifest, out: Path, device: str) -> int:
    """Rank 0 (or the only process): run the round into a staging folder, then publish it."""
    from workstation.core.errors import UserError

    world = distributed.world()
    emit(ProgressEvent("start", message=f"{manifest.kind} round on {device}" + (
        f" (rank 0 of {world.size} processes, {world.backend})" if world.enabled else ""
    )))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:

        def attempt(current: RoundManifest) -> dict[str, object]:
            # A retry starts from an empty folder, never from a half-written attempt.
            for child in staging.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
            return run_kind(current, staging, device)

        result = with_oom_retry(manifest, device, attempt)
        if world.enabled:
            result["processes"] = world.size
        (staging / METRICS_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
        (staging / MANIFEST_COPY).write_text(manifest.to_json(), encoding="utf-8")
        staging.rename(out)
    except (UserError, ContractError, MemoryError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        emit(ProgressEvent("error", message=str(exc)))
        return 2
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        emit(ProgressEvent("error", message=f"{type(exc).__name__}: {exc}"))
        return 1
    emit(ProgressEvent("done", out=str(out), metrics=result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--manifest", required=True, type=Path, help="round manifest (JSON)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must not exist)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    args = parser.parse_args(argv)
    return run(args.manifest, args.out, args.device)


if __name__ == "__main__":
    sys.exit(main())
