"""Training rounds as a use case: feedback -> manifest -> child process -> model version.

No Qt: the GUI runs :func:`run_round` on a worker thread and cancels through the
:class:`RoundHandle`; the CLI (``iad-workstation train``) runs it directly. The round itself
runs in ``python -m training`` so a crash or a kill cannot corrupt the app or the store,
and the GPU memory is freed when it exits. A version is registered only after the child
has renamed its finished output folder into place and exited cleanly; anything else
marks the round failed or cancelled and registers nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from training.contract import (
    ContractError,
    ParentModel,
    ProgressEvent,
    RoundExtras,
    RoundManifest,
    Sample,
    check_feedback,
    parse_event,
)
from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.types import ModelVersion, Product, Round
from workstation.services.onboard import normal_images
from workstation.store.repository import Store

if TYPE_CHECKING:
    from workstation.config import Settings

DECISIVE = ("accepted", "normal", "anomalous")
CORRECTION_SOURCES = ("inspector", "ground_truth")
OnEvent = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class RoundOptions:
    """Everything a round is started with, typed: the CLI and the GUI build one (usually
    through :meth:`from_settings`) and the manifest is written from it."""

    kind: str = "adapter"
    """A registered trained kind (:mod:`workstation.core.kinds`)."""
    backbone: str = "filterbank"
    base_model: str = ""
    image_size: int = 256
    holdout_fraction: float = 0.3
    regression_tolerance: float = 0.01
    seed: int = 0
    hyperparameters: Any = field(default_factory=dict)
    """The kind's ``Hyperparameters`` dataclass; a mapping given here is converted
    strictly (an unknown key is a UserError naming it and the known ones)."""
    device: str = "auto"
    processes: int = 1
    """Training processes (torchrun, DistributedDataParallel): one per GPU, or gloo ranks
    on the CPU. The global batch stays the hyperparameters' own, split across them."""

    def __post_init__(self) -> None:
        if not 0 <= self.holdout_fraction < 1:
            raise UserError("holdout_fraction must be in [0, 1)")
        if self.processes < 1:
            raise UserError(f"processes must be at least 1; got {self.processes}")
        try:
            kind = kinds.get(self.kind)
        except kinds.UnknownKindError as exc:
            raise UserError(str(exc)) from None
        object.__setattr__(self, "hyperparameters", kind.hyperparameters(self.hyperparameters))

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        kind: str,
        *,
        hyperparameters: dict[str, object] | None = None,
        device: str | None = None,
        processes: int = 1,
    ) -> RoundOptions:
        """The round the CLI and the GUI start: trained and judged at the experts' own size,
        so the gate's "before" is exactly what the inspector sees now."""
        try:
            module = kinds.get(kind).implementation()
        except kinds.UnknownKindError as exc:
            raise UserError(str(exc)) from None
        base_model, defaults = module.settings_defaults(settings)
        hyper = {**defaults, **(hyperparameters or {})}
        return cls(
            kind=kind,
            backbone=settings.experts.backbone,
            base_model=base_model,
            image_size=settings.experts.image_size,
            holdout_fraction=settings.training.holdout_fraction,
            regression_tolerance=settings.training.regression_tolerance,
            hyperparameters=hyper,
            device=device or settings.device.preference,
            processes=processes,
        )


@dataclass(frozen=True)
class RoundOutcome:
    round: Round
    version: ModelVersion | None
    status: Literal["succeeded", "failed", "cancelled"]
    message: str


class RoundHandle:
    """Lets another thread cancel a running round (kills the child process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self.cancelled = False

    def attach(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._process = process
            if self.cancelled:
                process.kill()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


# ------------------------------------------------------------------ manifest from store


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def rounds_root(store: Store, product: Product) -> Path:
    """Round workspaces (manifest, masks, child log) of this store only, beside its file;
    a finished round's model moves on into the store's models folder."""
    return store.path.parent / f"{store.path.stem}.rounds" / f"product-{product.id}"


def _last_round_start(store: Store, product: Product, kind: str) -> str | None:
    done = [r for r in store.list_rounds(product.id) if r.kind == kind and r.status == "succeeded"]
    return done[-1].started_at if done else None


def collect_feedback(
    store: Store, product: Product, *, mask_dir: Path, since: str | None
) -> list[Sample]:
    """One sample per decisively reviewed image; masks are written to ``mask_dir`` as .npy.

    Label: the review's verdict (``accepted`` takes the model's verdict). The mask of a
    defect is the newest inspector or ground-truth revision (for ``accepted``, the newest
    revision of any source: the inspector accepted the model's mask). A sample is golden
    when it is an inspector correction made before the last successful round (``since``)
    or an image an engineer marked golden (``store.mark_golden``).
    """
    samples = []
    marked = store.golden_image_ids(product.id)
    for row in store.query_images(product.id, review_state="reviewed", order_by="name"):
        review = store.latest_review(row.image.id)
        if review is None or review.verdict not in DECISIVE:
            continue
        anomalous = review.verdict == "anomalous" or (
            review.verdict == "accepted" and bool(row.anomalous)
        )
        mask_path = None
        if anomalous:
            sources = None if review.verdict == "accepted" else CORRECTION_SOURCES
            revision = store.latest_mask_revision(row.image.id, sources=sources)
            if revision is not None and store.load_mask(revision).any():
                mask_dir.mkdir(parents=True, exist_ok=True)
                mask_path = mask_dir / f"{row.image.id}.npy"
                np.save(mask_path, store.load_mask(revision))
        explanation = store.latest_explanation(row.image.id)
        corrected = review.verdict in ("normal", "anomalous")
        samples.append(
            Sample(
                image_path=row.image.path,
                label="anomalous" if anomalous else "normal",
                image_id=row.image.id,
                mask_path=None if mask_path is None else str(mask_path),
                explanation=explanation.explanation.to_dict() if explanation else None,
                golden=row.image.id in marked
                or bool(corrected and since is not None and review.created_at < since),
            )
        )
    return samples


def split_samples(
    samples: list[Sample], *, holdout_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Golden samples held out; the rest split per label so both sides keep both labels."""
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    held = [s for s in samples if s.golden]
    for label in ("normal", "anomalous"):
        group = [s for s in samples if not s.golden and s.label == label]
        order = rng.permutation(len(group))
        n_held = min(int(len(group) * holdout_fraction), max(0, len(group) - 1))
        held += [group[i] for i in order[:n_held]]
        train += [group[i] for i in order[n_held:]]
    return train, held


def build_manifest(
    store: Store, product: Product, options: RoundOptions, round_dir: Path
) -> RoundManifest:
    """Manifest of the product's feedback; raises UserError when it cannot teach anything."""
    if options.kind == "types":  # kind: types (issue 22): its own samples, per-type split
        from workstation.services.defect_types import build_types_manifest

        return build_types_manifest(store, product, options, round_dir)
    kind = kinds.get(options.kind).implementation()
    since = _last_round_start(store, product, options.kind)
    samples = collect_feedback(store, product, mask_dir=round_dir / "masks", since=since)
    if kind.learns_from_all_normals:
        samples = _with_normal_images(store, product, samples)
    train, held = split_samples(
        samples, holdout_fraction=options.holdout_fraction, seed=options.seed
    )
    try:
        check_feedback(options.kind, train)
    except ContractError as exc:
        shutil.rmtree(round_dir, ignore_errors=True)
        raise UserError(f"no {options.kind} round for {product.name!r}: {exc}") from None
    if kind.learns_from_all_normals:
        # The few-shot bank of both gate sides holds only train-side normals, so the
        # held-out normals measure false alarms honestly.
        references = tuple(s.image_path for s in train if s.label == "normal")
    else:
        references = tuple(
            r.path for r in store.list_images(product.id, split="train", source_label="good")
        )
    active = store.active_model_version(product.id, options.kind)
    parent = None
    if active is not None:
        parent = ParentModel(
            active.path, active.config.get("backbone"), lambda: store.model_files(active)
        )
    extras = kind.manifest_extras(parent, backbone=options.backbone, round_dir=round_dir)
    return RoundManifest(
        product=product.name,
        kind=options.kind,
        backbone=options.backbone,
        base_model=options.base_model,
        train=tuple(train),
        held_out=tuple(held),
        references=references,
        hyperparameters=asdict(options.hyperparameters),
        extras=RoundExtras(
            regression_tolerance=options.regression_tolerance,
            # the gate judges false alarms and recall where the engineer's threshold is
            # (``models threshold``), not at the calibrated default
            decision_threshold=product.decision_threshold,
            **extras,
        ),
        seed=options.seed,
        image_size=options.image_size,
        product_context={
            "description": product.description,
            "normality_rules": list(product.normality_rules),
            "defect_vocabulary": list(product.defect_vocabulary),
        },
    )


def _with_normal_images(store: Store, product: Product, samples: list[Sample]) -> list[Sample]:
    """The self-taught network learns from every known-normal image of the product (the
    onboarding references), not only from reviewed ones; reviewed defects with masks stay
    as real positives."""
    known = {s.image_id for s in samples}
    extra = [
        Sample(image_path=r.path, label="normal", image_id=r.id)
        for r in normal_images(store, product)
        if r.id not in known
    ]
    return [s for s in samples if s.label == "anomalous" and s.mask_path is not None] + [
        s for s in samples if s.label == "normal"
    ] + extra


def new_labels_since_last_round(store: Store, product: Product, kind: str) -> int:
    """Decisive reviews made after the last successful round of ``kind`` started."""
    since = _last_round_start(store, product, kind)
    return sum(
        1
        for review in store.list_reviews(product.id)
        if review.verdict in DECISIVE and (since is None or review.created_at >= since)
    )


# ----------------------------------------------------------------------------- running


def child_command(manifest_path: Path, out: Path, device: str, processes: int = 1) -> list[str]:
    """``python -m training ...``; with several processes the same under torchrun, run as
    this interpreter's ``torch.distributed.run`` module (no PATH lookup, the app's own
    environment), on this machine only (``--standalone`` finds a free port itself)."""
    round_args = ["-m", "training", "--manifest", str(manifest_path), "--out", str(out)]
    round_args += ["--device", device]
    if processes == 1:
        return [sys.executable, *round_args]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [sys.executable, *launcher, *round_args]


def child_env() -> dict[str, str]:
    """The child must import this checkout's packages even when not installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _flatten(metrics: dict[str, object]) -> dict[str, float]:
    flat: dict[str, float] = {}
    for side in ("before", "after"):
        values = metrics.get(side)
        if isinstance(values, dict):
            flat |= {f"{side}.{k}": float(v) for k, v in values.items()}
    return flat


def run_round(
    store: Store,
    product_name: str,
    options: RoundOptions,
    *,
    on_event: OnEvent | None = None,
    handle: RoundHandle | None = None,
    resume: bool = False,
) -> RoundOutcome:
    """Build the manifest, run the child, register the result; blocks until it ends.

    ``resume`` continues the newest interrupted round of the kind from its checkpoint, with
    its own manifest, instead of starting a new one.
    """
    product = store.get_product(product_name)
    if resume:
        record = resumable_round(store, product, options.kind)
        if record is None:
            raise UserError(
                f"{product.name!r} has no interrupted {options.kind} round with a checkpoint "
                "to resume; start a new round instead"
            )
    else:
        round_dir = rounds_root(store, product) / f"{options.kind}-{_stamp()}"
        manifest = build_manifest(store, product, options, round_dir)
        manifest_path = manifest.save(round_dir / "manifest.json")
        record = store.add_round(product.id, kind=options.kind, manifest_path=str(manifest_path))
    outcome = _run_child(store, product, record, options, on_event=on_event, handle=handle)
    if options.kind == "types" and outcome.version is not None:  # kind: types (issue 22)
        _types_changed(store, product, outcome.version.state == "active")
    return outcome


def _types_changed(store: Store, product: Product, changed: bool = True) -> None:
    """A new active type head rewrites the unreviewed images' drafts (kind: types)."""
    if changed:
        from workstation.services.typed_drafts import redraft_unreviewed

        redraft_unreviewed(store, product)


def resumable_round(store: Store, product: Product, kind: str) -> Round | None:
    """The newest round of ``kind`` that stopped (killed, cancelled, failed) after writing
    a checkpoint, unless a later round of that kind succeeded."""
    for record in reversed(store.list_rounds(product.id)):
        if record.kind != kind:
            continue
        if record.status == "succeeded":
            return None
        checkpoint = _checkpoint_dir(Path(record.manifest_path))
        if checkpoint is not None and checkpoint.is_dir():
            return record
    return None


def _checkpoint_dir(manifest_path: Path) -> Path | None:
    """Where the round's manifest says it checkpoints (None: nowhere, or unreadable)."""
    try:
        folder = RoundManifest.load(manifest_path).extras.checkpoint_dir
    except (ContractError, UserError):
        return None
    return None if folder is None else Path(folder)


def _run_child(
    store: Store,
    product: Product,
    record: Round,
    options: RoundOptions,
    *,
    on_event: OnEvent | None,
    handle: RoundHandle | None,
) -> RoundOutcome:
    manifest_path = Path(record.manifest_path)
    round_dir = manifest_path.parent
    store.update_round(record.id, status="running")
    out = round_dir / "model"
    handle = handle or RoundHandle()
    last: ProgressEvent | None = None
    with (round_dir / "child.log").open("a", encoding="utf-8") as log:
        # Under torchrun the child is the launcher; cancelling kills it like a single
        # round, and its ranks end with it (``training.distributed``). The stdout loop
        # ends only when the last rank has closed the pipe, so nothing writes after it.
        process = subprocess.Popen(
            child_command(manifest_path, out, options.device, options.processes),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=child_env(),
        )
        handle.attach(process)
        assert process.stdout is not None
        for line in process.stdout:
            event = parse_event(line)
            if event is None:
                continue
            last = event
            if on_event is not None:
                on_event(event)
        code = process.wait()
    _remove_partial(out)
    if handle.cancelled:
        shutil.rmtree(out, ignore_errors=True)
        store.update_round(record.id, status="cancelled", message="cancelled by the user")
        return RoundOutcome(store.get_round(record.id), None, "cancelled", "cancelled")
    if code != 0 or last is None or last.event != "done" or not out.is_dir():
        message = last.message if last is not None and last.event == "error" else ""
        message = message or f"the training process stopped (exit code {code}); see {log.name}"
        shutil.rmtree(out, ignore_errors=True)
        store.update_round(record.id, status="failed", message=message)
        return RoundOutcome(store.get_round(record.id), None, "failed", message)
    checkpoint = _checkpoint_dir(manifest_path)
    if checkpoint is not None:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return _register(store, product, record, out, options)


def _remove_partial(out: Path) -> None:
    """A killed child cannot clean up: remove its staging folders (``.model.*``)."""
    for leftover in out.parent.glob(f".{out.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _register(
    store: Store, product: Product, record: Round, out: Path, options: RoundOptions
) -> RoundOutcome:
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    promote = bool(metrics.get("promote"))
    reason = str(metrics.get("reason", ""))
    parent = store.active_model_version(product.id, options.kind)
    version = store.add_model_version(
        product.id,
        name=f"{options.kind}-{product.id}-{record.id}",
        kind=options.kind,
        state="active" if promote else "candidate",
        parent_id=parent.id if parent else None,
        round_id=record.id,
        files=out,
        metrics=_flatten(metrics),
        config={
            "backbone": options.backbone,
            "base_model": options.base_model,
            "image_size": options.image_size,
            "gate": reason,
        },
    )
    message = ("promoted: " if promote else "kept as candidate: ") + reason
    store.update_round(record.id, status="succeeded", result_version_id=version.id, message=message)
    return RoundOutcome(store.get_round(record.id), version, "succeeded", message)
