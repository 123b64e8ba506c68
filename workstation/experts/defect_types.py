"""The defect-type head: names a region's type from the plant's own corrected examples.

Few-shot by design (one example per type works, more help): every reviewed defect is kept
as an exemplar (its region vector, its type, and who wrote what about it), so the head is
also the memory that drafts in the plant's words are taken from.

How it decides, and why:
- Columns are standardised on the exemplars, then each feature group (``regions.GROUPS``)
  gets the same total weight, so 46 patch channels do not drown ten shape numbers.
- With two or more examples of some type, each group is re-weighted by how well it
  separates the types on the exemplars (between-type over within-type variance, shrunk
  towards equal weights): a product whose types differ in shape leans on shape, one whose
  types differ in texture leans on texture. Against equal weights it took 5-shot accuracy
  from 0.87 to 0.92 on the demo and from 0.79 to 0.81 on magnetic tile
  (``docs/benchmarks.md``).
- A softmax regression with L2 (a small head, seconds at most on a CPU) gives the
  probabilities; its temperature is fitted on cross-validated predictions of the
  exemplars, so "80 %" means about 80 % (calibrated), and an answer under
  ``confidence_bar`` is reported as unsure.
- A caller may pass a prior over the types (the vocabulary's descriptions matched to the
  region's shape, ``explain.vocabulary``): types without any example get a share of it,
  so a type nobody has corrected yet can still be proposed.

numpy only (no torch): fitting 100 exemplars takes well under a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workstation.core.errors import UserError

HEAD_FILE = "type_head.json"
ARRAYS_FILE = "type_head.npz"
HEAD_FORMAT = "iad-defect-types/1"
UNSURE = "unsure"
MIN_TEMPERATURE = 0.25


@dataclass(frozen=True)
class Exemplar:
    """One reviewed defect: what the head learned from and what drafts quote."""

    defect_type: str
    image: str
    """Short name shown to the inspector, e.g. ``crack/002.png``."""
    author: str = ""
    description: str = ""
    location: str = ""
    severity: str = "low"
    image_id: int | None = None


@dataclass(frozen=True)
class HeadSettings:
    """How the head fits and answers; chosen by the round's hyperparameters."""

    l2: float = 1.0
    steps: int = 300
    shrink: float = 1.0
    """Strength of the pull of group weights towards equal (in exemplars per type)."""
    confidence_bar: float = 0.5
    prior_share: float = 0.5
    """At most this much probability goes to types without examples, by the prior."""
    folds: int = 5

    def __post_init__(self) -> None:
        if self.l2 < 0 or self.steps < 1 or self.shrink < 0 or self.folds < 2:
            raise UserError("type head: l2 and shrink >= 0, steps >= 1, folds >= 2")
        if not 0 <= self.confidence_bar < 1 or not 0 <= self.prior_share < 1:
            raise UserError("type head: confidence_bar and prior_share must be in [0, 1)")


@dataclass(frozen=True)
class Neighbour:
    exemplar: Exemplar
    similarity: float
    """exp(-distance / typical distance): 1 for the same region, ~0.4 for a typical pair."""


@dataclass(frozen=True)
class TypePrediction:
    """The head's answer for one region."""

    probabilities: dict[str, float]
    best: str
    confidence: float
    unsure: bool
    neighbours: tuple[Neighbour, ...] = field(default=())

    @property
    def answer(self) -> str:
        """The type to write into a draft: the best one, or ``unsure`` under the bar."""
        return UNSURE if self.unsure else self.best

    def runners_up(self, count: int = 2) -> list[tuple[str, float]]:
        ranked = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        return ranked[:count]


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def fit_softmax(
    z: np.ndarray, labels: np.ndarray, classes: int, *, l2: float, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch gradient descent (convex, so the
    fixed step count reaches the same answer on every machine)."""
    count, width = z.shape
    weights = np.zeros((width, classes))
    bias = np.zeros(classes)
    onehot = np.eye(classes)[labels]
    # Step size from the Lipschitz bound of the softmax loss: stable for any feature scale.
    rate = 1.0 / (0.5 * float((z * z).sum(1).mean()) + l2 / max(count, 1) + 1e-9)
    for _ in range(steps):
        grad = (_softmax(z @ weights + bias) - onehot) / count
        weights -= rate * (z.T @ grad + l2 / count * weights)
        bias -= rate * grad.sum(0)
    return weights, bias


def group_index(groups: Sequence[tuple[str, int]]) -> np.ndarray:
    return np.concatenate([np.full(width, i) for i, (_, width) in enumerate(groups)])


def group_weights(
    z: np.ndarray, labels: np.ndarray, groups: Sequence[tuple[str, int]], shrink: float
) -> np.ndarray:
    """Per-column weights: equal total per group, times how well the group separates types."""
    index = group_index(groups)
    base = np.concatenate([np.full(width, 1 / math.sqrt(width)) for _, width in groups])
    repeated = [c for c in np.unique(labels) if (labels == c).sum() >= 2]
    if len(np.unique(labels)) < 2 or not repeated:
        return base
    within = np.mean([z[labels == c].var(0) for c in repeated], 0)
    between = np.stack([z[labels == c].mean(0) for c in np.unique(labels)]).var(0)
    ratio = between / (within + 1e-3)
    per_group = np.array([ratio[index == g].mean() for g in range(len(groups))])
    per_group = per_group / max(float(per_group.mean()), 1e-9)
    per_type = len(labels) / len(np.unique(labels))
    per_group = (per_group * per_type + shrink) / (per_type + shrink)
    return base * np.sqrt(per_group[index])


class DefectTypeHead:
    """A fitted head; build with :meth:`fit`, keep with :meth:`save` / :meth:`load`."""

    def __init__(
        self,
        *,
        types: tuple[str, ...],
        exemplars: tuple[Exemplar, ...],
        features: np.ndarray,
        groups: tuple[tuple[str, int], ...],
        settings: HeadSettings,
        mean: np.ndarray,
        scale: np.ndarray,
        weights: np.ndarray,
        bias: np.ndarray,
        temperature: float,
        typical_distance: float,
    ) -> None:
        self.types = types
        self.exemplars = exemplars
        self.features = features
        self.groups = groups
        self.settings = settings
        self.mean = mean
        self.scale = scale
        self.weights = weights
        self.bias = bias
        self.temperature = temperature
        self.typical_distance = typical_distance

    # -- fitting ----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        exemplars: Sequence[Exemplar],
        groups: tuple[tuple[str, int], ...],
        *,
        vocabulary: Sequence[str] = (),
        settings: HeadSettings = HeadSettings(),
        seed: int = 0,
    ) -> DefectTypeHead:
        """Fit on ``features`` (one row per exemplar). ``vocabulary`` adds types with no
        example yet (reachable only through a prior at prediction time)."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[0] != len(exemplars) or not len(exemplars):
            raise UserError("the type head needs one feature row per reviewed defect")
        learned = tuple(sorted({e.defect_type for e in exemplars}))
        types = learned + tuple(sorted(set(vocabulary) - set(learned)))
        labels = np.array([learned.index(e.defect_type) for e in exemplars])
        mean = features.mean(0)
        spread = features.std(0)
        scale = np.maximum(spread, max(float(np.median(spread)) * 1e-2, 1e-6))
        z = (features - mean) / scale
        column = np.maximum(group_weights(z, labels, groups, settings.shrink), 1e-6)
        z = z * column
        weights, bias = fit_softmax(z, labels, len(learned), l2=settings.l2, steps=settings.steps)
        temperature = _fit_temperature(z, labels, len(learned), settings, seed)
        distances = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
        off = distances[~np.eye(len(z), dtype=bool)]
        typical = float(np.median(off)) if off.size else 1.0
        return cls(
            types=types,
            exemplars=tuple(exemplars),
            features=features.astype(np.float32),
            groups=groups,
            settings=settings,
            mean=mean,
            scale=scale / column,
            weights=weights,
            bias=bias,
            temperature=temperature,
            typical_distance=max(typical, 1e-6),
        )

    @property
    def learned_types(self) -> tuple[str, ...]:
        return self.types[: self.bias.size]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.types, 0)
        for exemplar in self.exemplars:
            out[exemplar.defect_type] += 1
        return out

    # -- answering --------------------------------------------------------------------------
    def _z(self, features: np.ndarray) -> np.ndarray:
        return (np.asarray(features, np.float64) - self.mean) / self.scale

    def predict(
        self,
        features: np.ndarray,
        *,
        prior: dict[str, float] | None = None,
        neighbours: int = 3,
        exclude_image: int | None = None,
    ) -> TypePrediction:
        """Type probabilities of one region; ``prior`` (type -> weight) lends a share to
        types without examples. ``exclude_image`` leaves that image's own exemplar out of
        the neighbours (a reviewed image is not "like itself")."""
        if features.shape != (self.mean.size,):
            raise UserError(
                f"region vector has {features.size} values; this type head expects "
                f"{self.mean.size} (it was trained with another backbone)"
            )
        z = self._z(features)
        probs = _softmax((z @ self.weights + self.bias) / self.temperature)
        out = dict(zip(self.learned_types, (float(p) for p in probs), strict=True))
        unseen = [t for t in self.types if t not in out]
        if prior and unseen:
            total = sum(max(prior.get(t, 0.0), 0.0) for t in self.types) or 1.0
            share = self.settings.prior_share * sum(max(prior.get(t, 0.0), 0.0) for t in unseen)
            share /= total
            out = {t: p * (1 - share) for t, p in out.items()}
            unseen_total = sum(max(prior.get(t, 0.0), 0.0) for t in unseen) or 1.0
            out |= {t: share * max(prior.get(t, 0.0), 0.0) / unseen_total for t in unseen}
        best = max(out, key=lambda t: out[t])
        confidence = out[best]
        return TypePrediction(
            probabilities=out,
            best=best,
            confidence=confidence,
            unsure=confidence < self.settings.confidence_bar,
            neighbours=self.nearest(z, count=neighbours, exclude_image=exclude_image),
        )

    def nearest(
        self, z: np.ndarray, *, count: int, exclude_image: int | None = None
    ) -> tuple[Neighbour, ...]:
        bank = self._z(self.features)
        distances = np.sqrt(((bank - z) ** 2).sum(1))
        order = np.argsort(distances, kind="stable")
        found = []
        for index in order:
            exemplar = self.exemplars[int(index)]
            if exclude_image is not None and exemplar.image_id == exclude_image:
                continue
            similarity = math.exp(-float(distances[index]) / self.typical_distance)
            found.append(Neighbour(exemplar, similarity))
            if len(found) == count:
                break
        return tuple(found)

    # -- persistence ------------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "format": HEAD_FORMAT,
            "types": list(self.types),
            "groups": [list(g) for g in self.groups],
            "settings": asdict(self.settings),
            "temperature": self.temperature,
            "typical_distance": self.typical_distance,
            "exemplars": [asdict(e) for e in self.exemplars],
        }
        arrays = folder / ARRAYS_FILE
        with open(arrays.with_suffix(".tmp"), "wb") as handle:
            np.savez(
                handle,
                features=self.features,
                mean=self.mean,
                scale=self.scale,
                weights=self.weights,
                bias=self.bias,
            )
        arrays.with_suffix(".tmp").replace(arrays)
        target = folder / HEAD_FILE
        target.with_suffix(".tmp").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        target.with_suffix(".tmp").replace(target)
        return folder

    @classmethod
    def load(cls, folder: Path) -> DefectTypeHead:
        try:
            meta = json.loads((folder / HEAD_FILE).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_FILE) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise UserError(f"no defect-type head in {folder}; train a types round") from None
        except (ValueError, OSError, json.JSONDecodeError) as exc:
            raise UserError(f"the defect-type head in {folder} is damaged: {exc}") from exc
        if meta.get("format") != HEAD_FORMAT:
            raise UserError(f"{folder} holds an unknown type-head format; train a new round")
        return cls(
            types=tuple(meta["types"]),
            exemplars=tuple(Exemplar(**e) for e in meta["exemplars"]),
            features=arrays["features"],
            groups=tuple((str(n), int(w)) for n, w in meta["groups"]),
            settings=HeadSettings(**meta["settings"]),
            mean=arrays["mean"],
            scale=arrays["scale"],
            weights=arrays["weights"],
            bias=arrays["bias"],
            temperature=float(meta["temperature"]),
            typical_distance=float(meta["typical_distance"]),
        )


def _fit_temperature(
    z: np.ndarray, labels: np.ndarray, classes: int, settings: HeadSettings, seed: int
) -> float:
    """Temperature that minimises the log loss of cross-validated predictions.

    Types with a single example cannot be held out without vanishing, so they stay in
    every training fold; with no repeated type at all the temperature stays 1.
    """
    repeated = [i for i in range(len(labels)) if (labels == labels[i]).sum() >= 2]
    if classes < 2 or len(repeated) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    folds = np.full(len(labels), -1)
    shuffled = rng.permutation(repeated)
    folds[shuffled] = np.arange(len(shuffled)) % min(settings.folds, len(shuffled))
    logits = np.zeros((len(labels), classes))
    held = folds >= 0
    for fold in range(int(folds.max()) + 1):
        test = folds == fold
        weights, bias = fit_softmax(
            z[~test], labels[~test], classes, l2=settings.l2, steps=settings.steps
        )
        logits[test] = z[test] @ weights + bias
    # Never sharper than 1/MIN_TEMPERATURE: a few separable exemplars would otherwise
    # choose the sharpest temperature and call every near tie certain.
    grid = np.exp(np.linspace(math.log(MIN_TEMPERATURE), math.log(20.0), 61))
    rows, truth = np.arange(held.sum()), labels[held]
    losses = [-float(np.log(_softmax(logits[held] / t)[rows, truth] + 1e-12).mean()) for t in grid]
    return float(grid[int(np.argmin(losses))])
