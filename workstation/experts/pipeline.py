"""One object from configured experts to calibrated verdicts: fit, predict, save, load.

Services, the GUI worker, training and evaluation all use this, so that "the model of a
product" means the same thing everywhere: the enabled experts (few-shot bank, zero-shot
prompts, optionally a learned adapter), their calibration on the product's normal shots,
and the threshold. ``predict`` returns fused maps whose score is 1.0 at the threshold.

Saved as a folder: ``pipeline.json`` (config, expert list), ``fewshot.npz`` (memory bank),
``calibration.json`` (norms, threshold and its confidence statement).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workstation.core import kinds
from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap, Product
from workstation.experts.base import Expert, ProgressFn, StageFn, build_backbone
from workstation.experts.fewshot import FewShotConfig, FewShotExpert, calibration_indices
from workstation.experts.fusion import Calibration, FusionMode, calibrate
from workstation.experts.image_head import ImageHead
from workstation.experts.registration import AlignMode, Registrar
from workstation.experts.selection import FusionChoice

if TYPE_CHECKING:
    from workstation.config import ExpertSettings

PIPELINE_FILE = "pipeline.json"
BANK_FILE = "fewshot.npz"
REGISTRATION_FILE = "registration.npz"
PIPELINE_FORMAT = "iad-expert-pipeline/1"
KNOWN_EXPERTS = ("fewshot", "zeroshot", "pool")
"""``pool`` is the few-shot bank whose scores the unlabelled pool can lower (pool.py); it
replaces ``fewshot``, never runs beside it."""
CHOICE_FILE = "fusion_choice.json"
AUTO = "auto"
"""Backbone value: choose among the installed backbones per product (``choosing.py``)."""
FALLBACK_BACKBONE = "filterbank"
"""``auto`` with nothing to choose on (one normal): the weight-free backbone."""


@dataclass(frozen=True)
class PipelineConfig:
    experts: tuple[str, ...] = ("fewshot",)
    backbone: str = "filterbank"
    fewshot: FewShotConfig = field(default_factory=FewShotConfig)
    clip_model: str = "clip-b16-plus"
    target_fpr: float = 0.05
    fusion: FusionMode = "mean"
    trained: dict[str, str] = field(default_factory=dict)
    """Folder of each trained model that joins the experts, by kind (``core.kinds``, whose
    ``attach`` adds it): ``training`` output, fused additively."""
    align: AlignMode = "off"
    """Register every image to a reference normal before the experts (registration.py)."""
    select: bool = True
    """Choose the backbone (when ``auto``), which trained experts join, their weights and
    normalisation on evidence held out of the fit (``choosing.py``); off, or nothing to
    choose: every configured expert joins with weight 1 as before."""
    left_out: tuple[str, ...] = ()
    """Trained experts the choice left out (not built, not fused)."""
    weights: dict[str, float] = field(default_factory=dict)
    """Fusion share of each expert (default 1)."""
    averaged: tuple[str, ...] = ()
    """Trained experts the choice puts in normal units and averaged instead of added."""

    def __post_init__(self) -> None:
        unknown = [e for e in self.experts if e not in KNOWN_EXPERTS]
        if unknown or not (self.experts or self.trained):
            raise UserError(
                f"unknown or no experts {unknown}; choose from {', '.join(KNOWN_EXPERTS)} "
                "or give a trained model"
            )
        if "pool" in self.experts and "fewshot" in self.experts:
            raise UserError("the pool expert is the few-shot expert plus the pool; enable one")
        for kind in self.trained:
            if kind not in {k.name for k in kinds.experts()}:
                raise UserError(
                    f"{kind!r} is not a trained kind that joins the experts; known: "
                    + ", ".join(k.name for k in kinds.experts())
                )
        if not 0 < self.target_fpr < 1:
            raise UserError("target false-positive rate must be between 0 and 1")

    @classmethod
    def from_settings(cls, settings: ExpertSettings, **overrides: Any) -> PipelineConfig:
        fewshot = FewShotConfig(
            image_size=settings.image_size,
            memory_budget=settings.memory_budget,
            augment=settings.augment_references,
            top_percent=settings.top_percent,
        )
        config = cls(
            experts=tuple(settings.enabled),
            backbone=settings.backbone,
            fewshot=fewshot,
            clip_model=settings.clip_model,
            target_fpr=settings.target_false_positive_rate,
            align=settings.align,  # type: ignore[arg-type]
        )
        return replace(config, **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["experts"] = list(self.experts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["trained"] = trained_folders(data)
        values["experts"] = tuple(values.get("experts", ("fewshot",)))
        values["left_out"] = tuple(values.get("left_out", ()))
        values["averaged"] = tuple(values.get("averaged", ()))
        values["fewshot"] = FewShotConfig(**values.get("fewshot", {}))
        return cls(**values)


def trained_folders(config: dict[str, Any]) -> dict[str, str]:
    """``trained`` of a saved config; configs saved before it named one ``<kind>_path``
    field per kind, which reads the same (so their fits stay current)."""
    trained = {str(k): str(v) for k, v in dict(config.get("trained") or {}).items() if v}
    for kind in kinds.experts():
        legacy = config.get(f"{kind.name}_path")
        if legacy and kind.name not in trained:
            trained[kind.name] = str(legacy)
    return trained


class InspectionPipeline:
    """Configured experts + calibration; see the module docstring."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        product: Product | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config or PipelineConfig()
        self.product = product or Product(id=0, name="object")
        self.device = device
        self.experts: dict[str, Expert] = {}
        self.additive: set[str] = set()
        self.calibration: Calibration | None = None
        self.choice: FusionChoice | None = None
        """The fusion choice of the last fit (or the saved one), None when none was made."""
        self.fitted_count = 0
        self.registrar = Registrar(self.config.align)
        self._build_experts()

    # --- building ---------------------------------------------------------------------

    def _build_experts(self) -> None:
        for name in self.config.experts:
            if name == "fewshot" and self.config.backbone == AUTO:
                continue  # built by the choice in ``fit``
            if name in ("fewshot", "pool"):
                from workstation.experts.pool import PoolExpert

                # the pool expert takes no part in the choice: with ``auto`` it keeps the
                # weight-free backbone
                chosen = FALLBACK_BACKBONE if self.config.backbone == AUTO else self.config.backbone
                backbone = build_backbone(chosen, device=self.device)
                kind = PoolExpert if name == "pool" else FewShotExpert
                self.experts[name] = kind(backbone, self.config.fewshot)
            else:
                from workstation.experts.zeroshot import create_zeroshot_expert

                self.experts[name] = create_zeroshot_expert(
                    self.product, model=self.config.clip_model, device=self.device
                )
        # Registration order, whatever order the config lists them in; a trained model
        # the fusion choice left out is not built at all.
        for kind in kinds.experts():
            folder = self.config.trained.get(kind.name)
            attach = kind.attach()
            if folder and attach is not None and kind.name not in self.config.left_out:
                attach(self, Path(folder))
        self.additive -= set(self.config.averaged)

    def add_expert(self, expert: Expert, *, additive: bool = False) -> None:
        """Hook for extra experts (e.g. a learned adapter). Refit afterwards to calibrate.

        ``additive`` experts output defect probabilities: they are scaled to normal units
        and added to the fused map instead of being averaged (see fusion.py).
        """
        self.experts[expert.name] = expert
        if additive:
            self.additive.add(expert.name)
        self.calibration = None

    # --- fit / predict ----------------------------------------------------------------

    def fit(
        self,
        normals: Sequence[np.ndarray],
        *,
        progress: ProgressFn | None = None,
        anomalies: Sequence[tuple[np.ndarray, np.ndarray | None]] = (),
        stages: StageFn | None = None,
    ) -> Calibration:
        """Fit every expert on the normal shots, then calibrate on held-out scores.

        Held out means: the few-shot bank leaves each calibration shot out of its own
        bank, and a trained expert (self-taught network) is calibrated only on normals it
        did not train on. When it trained on all of them, those are used and the threshold
        statement says that it may be optimistic. Before that, when there is a choice, the
        fusion is chosen on held-out evidence (``choosing.py``; ``anomalies`` are the
        confirmed defects, image and mask or None) and recorded in ``self.choice``.
        """
        if len(normals) == 0:
            raise UserError(
                "fitting needs at least one normal image of this product; add images "
                "labelled good (train/good) or mark some as normal"
            )
        # Which normals a trained expert learned from is told on the images as they came
        # (its fingerprints are of unaligned images), before they are aligned.
        chosen, optimistic = self._calibration_choice(normals)
        seen = self._seen(normals)
        self.registrar.fit(normals)
        normals = self._aligned(normals)
        prefitted = self._choose(normals, seen, chosen, anomalies)
        steps = len(self.experts) + 1
        per_shot: list[dict[str, AnomalyMap]] = [{} for _ in chosen]
        for step, (name, expert) in enumerate(self.experts.items()):
            if isinstance(expert, FewShotExpert):
                if name not in prefitted:
                    expert.fit(normals, calibration=chosen, stages=stages)
                maps = expert.calibration_maps(stages)
            else:
                if stages:
                    stages(0, 1, f"fitting the {name} expert")
                expert.fit(normals)
                maps = expert.predict([normals[i] for i in chosen])
            for slot, amap in zip(per_shot, maps, strict=True):
                slot[name] = amap
            if progress:
                progress(step + 1, steps)
        self.calibration = calibrate(
            per_shot,
            target_fpr=self.config.target_fpr,
            mode=self.config.fusion,
            additive=tuple(self.additive),
            optimistic=optimistic,
            weights=self.config.weights,
            head=self._head(),
        )
        self.fitted_count = len(normals)
        if progress:
            progress(steps, steps)
        return self.calibration

    def _seen(self, normals: Sequence[np.ndarray]) -> list[bool]:
        """Per normal: did a trained expert learn from it."""
        trained = [e for e in self.experts.values() if hasattr(e, "has_seen")]
        return [any(e.has_seen(image) for e in trained) for image in normals]

    def _choose(
        self,
        normals: Sequence[np.ndarray],
        seen: Sequence[bool],
        calibration: Sequence[int],
        anomalies: Sequence[tuple[np.ndarray, np.ndarray | None]],
    ) -> set[str]:
        """Run the fusion choice when there is one; the experts it left fitted."""
        from workstation.experts.choosing import candidate_backbones, run_choice

        self.choice = None
        others = {n: e for n, e in self.experts.items() if hasattr(e, "has_seen")}
        backbones = candidate_backbones(self.config.backbone)
        if (
            not self.config.select
            or "fewshot" not in self.config.experts
            or len(normals) < 2
            or (len(backbones) == 1 and not others and not anomalies)
        ):
            if self.config.backbone == AUTO and "fewshot" in self.config.experts:
                self._set_fewshot(FALLBACK_BACKBONE, None)
            return set()
        if self.config.align != "off":
            anomalies = [(self._aligned([im])[0], None) for im, _ in anomalies]
        run = run_choice(
            normals,
            seen=seen,
            backbone=self.config.backbone,
            fewshot=self.config.fewshot,
            others=others,
            probability=self.additive & set(others),
            calibration=calibration,
            anomalies=anomalies,
            device=self.device,
            seed=self.config.fewshot.seed,
        )
        if run is None:
            if self.config.backbone == AUTO:
                self._set_fewshot(FALLBACK_BACKBONE, None)
            return set()
        parts = {p.member.partition("(")[0]: p for p in run.choice.chosen}
        left_out = tuple(name for name in others if name not in parts)
        averaged = tuple(n for n, p in parts.items() if n in others and p.norm == "normal")
        for name in left_out:
            del self.experts[name]
        self.additive -= {*left_out, *averaged}
        self._set_fewshot(run.backbone, run.fitted)
        self.config = replace(
            self.config,
            backbone=run.backbone,
            left_out=left_out,
            averaged=averaged,
            weights={name: part.weight for name, part in parts.items()},
        )
        self.choice = run.choice
        return {"fewshot"} if run.fitted is not None else set()

    def _head(self) -> ImageHead | None:
        """The image head the choice learned from confirmed defects, if any."""
        data = self.choice.head if self.choice is not None else None
        return ImageHead.from_dict(data) if data else None

    def _set_fewshot(self, backbone: str, fitted: FewShotExpert | None) -> None:
        """Put the few-shot expert of ``backbone`` first among the experts."""
        expert = fitted or FewShotExpert(
            build_backbone(backbone, device=self.device), self.config.fewshot
        )
        rest = {n: e for n, e in self.experts.items() if n != "fewshot"}
        self.experts = {"fewshot": expert, **rest}
        self.config = replace(self.config, backbone=backbone)

    def _calibration_choice(self, normals: Sequence[np.ndarray]) -> tuple[list[int], bool]:
        """Indices of the normals to calibrate on, and whether a trained expert saw them."""
        seen = self._seen(normals)
        if not any(hasattr(e, "has_seen") for e in self.experts.values()):
            return calibration_indices(len(normals)), False
        unseen = [i for i, was_seen in enumerate(seen) if not was_seen]
        if not unseen:
            return calibration_indices(len(normals)), True
        return [unseen[i] for i in calibration_indices(len(unseen))], False

    def predict_detailed(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[AnomalyMap, dict[str, AnomalyMap]]]:
        """Fused calibrated map plus each expert's raw map, per image."""
        if self.calibration is None:
            raise UserError("the experts are not calibrated yet; fit on normal images first")
        alignments = [self.registrar.estimate(image) for image in images]
        aligned = [self.registrar.align(im, a) for im, a in zip(images, alignments, strict=True)]
        per_expert = {name: expert.predict(aligned) for name, expert in self.experts.items()}
        out = []
        for index, alignment in enumerate(alignments):
            outputs = {
                name: replace(maps[index], map=self.registrar.unalign(maps[index].map, alignment))
                for name, maps in per_expert.items()
            }
            out.append((self.calibration.fuse(outputs), outputs))
        return out

    def _aligned(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.registrar.align(im, self.registrar.estimate(im)) for im in images]

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        return [fused for fused, _ in self.predict_detailed(images)]

    # --- persistence ------------------------------------------------------------------

    def bank_expert(self) -> FewShotExpert | None:
        """The expert holding the memory bank (few-shot, or the pool expert built on it)."""
        return next((e for e in self.experts.values() if isinstance(e, FewShotExpert)), None)

    def save(self, folder: Path) -> Path:
        if self.calibration is None:
            raise UserError("only a fitted pipeline can be saved")
        folder.mkdir(parents=True, exist_ok=True)
        fewshot = self.bank_expert()
        if fewshot is not None:
            tmp = folder / (BANK_FILE + ".tmp.npz")
            np.savez(tmp, **fewshot.state())
            tmp.replace(folder / BANK_FILE)
        self.calibration.save(folder)
        self.registrar.save(folder / REGISTRATION_FILE)
        if self.choice is not None:
            write_json_atomic(folder / CHOICE_FILE, self.choice.to_dict())
        manifest = {
            "format": PIPELINE_FORMAT,
            "config": self.config.to_dict(),
            "experts": list(self.experts),
            "additive": sorted(self.additive),
            "fitted_count": self.fitted_count,
            "fusion": self.choice.summary() if self.choice is not None else None,
        }
        tmp_json = folder / (PIPELINE_FILE + ".tmp")
        tmp_json.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        tmp_json.replace(folder / PIPELINE_FILE)
        return folder

    @classmethod
    def load(
        cls, folder: Path, *, product: Product | None = None, device: str = "cpu"
    ) -> InspectionPipeline:
        try:
            manifest = json.loads((folder / PIPELINE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"no saved experts in {folder}; run onboarding first") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{folder / PIPELINE_FILE} is damaged: {exc}") from exc
        if manifest.get("format") != PIPELINE_FORMAT:
            raise UserError(f"{folder} holds an unsupported pipeline format; refit the product")
        pipeline = cls(PipelineConfig.from_dict(manifest["config"]), product=product, device=device)
        fewshot = pipeline.bank_expert()
        if fewshot is not None:
            with np.load(folder / BANK_FILE) as data:
                fewshot.load_state({key: data[key] for key in data.files})
        pipeline.calibration = Calibration.load(folder)
        pipeline.registrar.load(folder / REGISTRATION_FILE)
        pipeline.fitted_count = int(manifest.get("fitted_count", 0))
        pipeline.choice = read_choice(folder)
        return pipeline


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(path)


def read_choice(folder: Path) -> FusionChoice | None:
    """The saved fusion choice of a pipeline folder; None when the fit made none."""
    path = folder / CHOICE_FILE
    if not path.is_file():
        return None
    try:
        return FusionChoice.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is damaged: {exc}; refit the product") from exc
