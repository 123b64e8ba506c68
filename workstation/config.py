"""Frozen settings: ``resources/default_config.toml`` overlaid by the user's ``config.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from workstation.core.errors import UserError
from workstation.core.untrusted import Limits, MiB, set_limits
from workstation.paths import resources_dir, user_data_dir

ALIGN_MODES = ("off", "rigid", "similarity")
"""Pose alignment choices (``workstation.experts.registration.AlignMode``; the settings
do not import the experts, so that reading them stays light)."""


@dataclass(frozen=True)
class DeviceSettings:
    preference: str = "auto"


@dataclass(frozen=True)
class ExpertSettings:
    enabled: tuple[str, ...] = ("fewshot",)
    backbone: str = "filterbank"
    image_size: int = 512
    memory_budget: int = 20000
    augment_references: bool = False
    top_percent: float = 1.0
    clip_model: str = "clip-b16-plus"
    zeroshot_windows: tuple[int, ...] = (2, 3)
    target_false_positive_rate: float = 0.05
    align: str = "off"
    """Register images to a reference pose before the experts: off, rigid, similarity."""

    def __post_init__(self) -> None:
        if self.align not in ALIGN_MODES:
            raise UserError(f"experts.align must be one of {', '.join(ALIGN_MODES)}")
        if not 0 < self.target_false_positive_rate < 1:
            raise UserError("experts.target_false_positive_rate must be between 0 and 1")
        if any(not isinstance(w, int) or w < 1 for w in self.zeroshot_windows):
            raise UserError("experts.zeroshot_windows must be window sides in patches (>= 1)")
        if self.image_size < 32:
            raise UserError("experts.image_size must be at least 32 pixels")


@dataclass(frozen=True)
class ExplainerSettings:
    kind: str = "template"
    vlm: str = "qwen2.5-vl-3b"
    max_new_tokens: int = 256
    use_reference_image: bool = True
    image_side: int = 448
    """Long side of the images in a VLM prompt; vision tokens grow with its square."""
    max_crops: int = 2

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError("explainer.max_new_tokens must be at least 1")
        if self.image_side < 56 or self.max_crops < 0:
            raise UserError("explainer.image_side must be >= 56 and max_crops >= 0")


@dataclass(frozen=True)
class ReviewSettings:
    reviewer: str = ""
    text_autosave_ms: int = 800
    undo_depth: int = 250


@dataclass(frozen=True)
class TrainingSettings:
    holdout_fraction: float = 0.3
    regression_tolerance: float = 0.01


@dataclass(frozen=True)
class LimitSettings:
    """What a bundle or an image from outside may hold (``core.untrusted.Limits``).

    The defaults are far above what a plant produces; raise one where a plant's data
    really is larger (line-scan images over 100 megapixels, weight files over 16 GB)."""

    max_image_megapixels: float = 100.0
    max_bundle_member_mb: int = 16 * 1024
    max_bundle_total_mb: int = 256 * 1024
    max_bundle_table_mb: int = 64
    max_bundle_members: int = 2_000_000
    max_compression_ratio: int = 50

    def to_limits(self) -> Limits:
        return Limits(
            member_bytes=int(self.max_bundle_member_mb * MiB),
            total_bytes=int(self.max_bundle_total_mb * MiB),
            table_bytes=int(self.max_bundle_table_mb * MiB),
            members=int(self.max_bundle_members),
            compression_ratio=int(self.max_compression_ratio),
            image_pixels=int(self.max_image_megapixels * 1_000_000),
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise UserError(f"limits.{f.name} must be a positive number")
        self.to_limits()  # its own checks


@dataclass(frozen=True)
class Settings:
    device: DeviceSettings = field(default_factory=DeviceSettings)
    experts: ExpertSettings = field(default_factory=ExpertSettings)
    explainer: ExplainerSettings = field(default_factory=ExplainerSettings)
    review: ReviewSettings = field(default_factory=ReviewSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)


def user_config_path() -> Path:
    return user_data_dir() / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"settings file {path} is not valid TOML: {exc}") from exc


def _section(cls: type, values: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise UserError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}")
    coerced = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**coerced)


def merge(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Overlay a parsed TOML mapping onto ``settings``; unknown keys are an error, not ignored."""
    changes: dict[str, Any] = {}
    for section in fields(Settings):
        values = overrides.get(section.name)
        if values is None:
            continue
        current = getattr(settings, section.name)
        merged = {f.name: getattr(current, f.name) for f in fields(current)} | values
        changes[section.name] = _section(type(current), merged, section.name)
    unknown = set(overrides) - {f.name for f in fields(Settings)}
    if unknown:
        raise UserError(f"unknown settings section(s): {', '.join(sorted(unknown))}")
    return replace(settings, **changes)


def load_settings(user_file: Path | None = None) -> Settings:
    """The settings, with their ``[limits]`` put in force for this process (every
    reader of bundles and images checks against them)."""
    settings = Settings()
    default_file = resources_dir() / "default_config.toml"
    if default_file.is_file():
        settings = merge(settings, _read_toml(default_file))
    user_file = user_file or user_config_path()
    if user_file.is_file():
        settings = merge(settings, _read_toml(user_file))
    set_limits(settings.limits.to_limits())
    return settings
