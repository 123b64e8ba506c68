"""The only interface between the app and a training round: a manifest in, JSON lines out.

Standard library only, so the app can write manifests and parse progress without importing
torch, and a round can be reproduced from its saved manifest alone. The round writes its
result into a folder (see ``training.__main__``); nothing else crosses the process boundary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from workstation.core import kinds
from workstation.core.strict import from_dict

RoundKind = str
"""A registered trained kind (:mod:`workstation.core.kinds`)."""
SampleLabel = Literal["normal", "anomalous"]
EventKind = Literal["start", "step", "metrics", "done", "error"]

MANIFEST_VERSION = 1


class ContractError(ValueError):
    """A manifest or progress line that does not follow the contract."""


def _check(value: str, allowed: object, what: str) -> None:
    if value not in get_args(allowed):
        raise ContractError(f"{what} must be one of {', '.join(get_args(allowed))}; got {value!r}")


@dataclass(frozen=True)
class Sample:
    """One labeled image of a round.

    ``mask_path`` points at a ``.npy`` file (uint8 0/1, image-sized) written next to the
    manifest; ``golden`` marks an inspector correction, which always sits on the held-out side.
    """

    image_path: str
    label: SampleLabel
    image_id: int | None = None
    mask_path: str | None = None
    explanation: dict[str, str] | None = None
    guidance: str = ""
    golden: bool = False
    map_path: str | None = None
    """The image's stored anomaly map (``.npy``), for kinds that read it (types)."""
    author: str = ""
    """Who reviewed the sample (a types round's drafts name them)."""

    def __post_init__(self) -> None:
        _check(self.label, SampleLabel, "sample label")


@dataclass(frozen=True)
class RoundExtras:
    """What the app adds around a kind's own hyperparameters: the promotion gate's
    tolerance, the active version the round continues from, where it checkpoints."""

    regression_tolerance: float = 0.01
    parent: str | None = None
    """Folder of the active version of the kind the round starts from (None: fresh)."""
    checkpoint_dir: str | None = None
    """Where a resumable round keeps its checkpoint (None: it keeps none)."""
    decision_threshold: float = 1.0
    """The product's threshold in calibrated units (an engineer may have moved it from
    1.0): where the gate counts false alarms and recall."""
    experts: str | None = None
    """The product's fitted experts (a types round describes regions as they see them)."""


LEGACY_EXTRAS = {
    "regression_tolerance": "regression_tolerance",
    "parent_adapter": "parent",
    "parent_selftaught": "parent",
    "checkpoint_dir": "checkpoint_dir",
}
"""Manifests written before :class:`RoundExtras` kept these among the hyperparameters."""


@dataclass(frozen=True)
class ParentModel:
    """The kind's active version as a round's manifest sees it: ``files()`` checks the
    folder against its registered hash (and raises when it cannot be trusted)."""

    path: str | None
    backbone: object
    files: Callable[[], Path]


@dataclass(frozen=True)
class RoundManifest:
    """Everything a round needs, saved as JSON so any round can be rerun bit for bit."""

    product: str
    kind: RoundKind
    backbone: str
    base_model: str
    """The model the round starts from: the adapter's backbone weights tag or the VLM name."""
    train: tuple[Sample, ...]
    held_out: tuple[Sample, ...]
    references: tuple[str, ...] = ()
    """Normal reference images (the few-shot memory bank) used to score the held-out set."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    """The kind's own hyperparameters (its ``Hyperparameters`` dataclass, strict)."""
    extras: RoundExtras = field(default_factory=RoundExtras)
    seed: int = 0
    image_size: int = 256
    product_context: dict[str, Any] = field(default_factory=dict)
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        try:
            kinds.get(self.kind)
        except kinds.UnknownKindError as exc:
            raise ContractError(f"round kind: {exc}") from None
        if self.version > MANIFEST_VERSION:
            raise ContractError(
                f"manifest version {self.version} is newer than this trainer "
                f"({MANIFEST_VERSION}); update the application"
            )
        train_paths = {s.image_path for s in self.train}
        leaked = [s.image_path for s in self.held_out if s.image_path in train_paths]
        if leaked:
            raise ContractError(f"held-out images also in train: {leaked[:3]}")
        if any(s.golden for s in self.train):
            raise ContractError("golden (inspector-corrected) samples must be held out")

    @property
    def golden(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.held_out if s.golden)

    def typed_hyperparameters(self) -> Any:
        """The kind's hyperparameters dataclass; an unknown key is refused (UserError)."""
        return kinds.get(self.kind).hyperparameters(self.hyperparameters)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RoundManifest:
        try:
            raw = json.loads(text)
            raw["train"] = tuple(Sample(**s) for s in raw["train"])
            raw["held_out"] = tuple(Sample(**s) for s in raw["held_out"])
            raw["references"] = tuple(raw.get("references", ()))
            if "extras" in raw:
                raw["extras"] = from_dict(RoundExtras, raw["extras"], "round extras")
            else:
                hyper = dict(raw.get("hyperparameters", {}))
                old = {new: hyper.pop(key) for key, new in LEGACY_EXTRAS.items() if key in hyper}
                raw["hyperparameters"], raw["extras"] = hyper, RoundExtras(**old)
            return cls(**raw)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ContractError(f"not a round manifest: {exc}") from exc

    def save(self, path: Path) -> Path:
        """Write atomically (temp file + rename) so a reader never sees half a manifest."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> RoundManifest:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ContractError(f"cannot read manifest {path}: {exc.strerror}") from exc
        return cls.from_json(text)


class NotEnoughFeedbackError(ContractError):
    """The feedback cannot teach anything yet (nothing labeled, or only one side)."""


def check_feedback(kind: RoundKind, train: tuple[Sample, ...] | list[Sample]) -> None:
    """Refuse a round that cannot learn: each kind's own check (``training/kinds/``)."""
    kinds.get(kind).implementation().check_feedback(train)


@dataclass(frozen=True)
class ProgressEvent:
    """One JSON line on the round's stdout.

    ``start``: the round began (``message`` names the device); ``step``: training progress
    (``step``/``total``/``loss``/``eta_s``); ``metrics``: evaluation numbers; ``done``: the
    output folder is complete (``out``); ``error``: the round stopped (``message`` says why).
    """

    event: EventKind
    step: int | None = None
    total: int | None = None
    loss: float | None = None
    eta_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    out: str | None = None

    def __post_init__(self) -> None:
        _check(self.event, EventKind, "progress event")

    def to_line(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v not in (None, "", {})}
        if isinstance(self.loss, float) and not math.isfinite(self.loss):
            data["loss"] = None
        return json.dumps(data, sort_keys=True)


def parse_event(line: str) -> ProgressEvent | None:
    """Parse one stdout line; lines that are not JSON objects (library chatter) give None."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or "event" not in raw:
        return None
    try:
        return ProgressEvent(**raw)
    except (TypeError, ContractError):
        return None
