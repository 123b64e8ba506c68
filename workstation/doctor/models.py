"""Doctor checks of the models: the weight-free pipeline, installed bundles, catalogue models.

Missing weights are ``optional`` findings: the weight-free defaults keep the application
working, so only the built-in pipeline producing wrong scores is a required failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from workstation.config import Settings
from workstation.core.checks import CheckResult
from workstation.core.errors import MissingModelError, UserError
from workstation.doctor.context import DoctorContext, format_bytes

PROBE_SIZE = 64
"""Side of the synthetic images the weight-free pipeline check runs on (fast on any CPU)."""
WEIGHT_FREE_BACKBONE = "filterbank"
WEIGHT_FREE_EXPLAINER = "template"


def _synthetic_images() -> tuple[list, list]:
    """Textured normal images, and a normal plus a defective one to score (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    base = rng.integers(90, 130, size=(PROBE_SIZE, PROBE_SIZE, 3), dtype=np.uint8)

    def jittered():
        noise = rng.integers(-4, 5, base.shape)
        return np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    normals = [jittered() for _ in range(3)]
    defect = jittered()
    defect[24:36, 24:36] = 250
    return normals, [jittered(), defect]


def check_weight_free_pipeline(_: DoctorContext) -> CheckResult:
    """The default that needs no downloads: filter-bank few-shot expert + template explainer.

    It must not only run but rank a synthetic defect above a normal image; an expert that
    loads but scores garbage (e.g. a broken OpenCV in the bundle) fails here.
    """
    from workstation.experts.base import build_backbone
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert
    from workstation.explain.template import explain

    normals, (normal, defect) = _synthetic_images()
    expert = FewShotExpert(
        build_backbone(WEIGHT_FREE_BACKBONE, device="cpu"),
        FewShotConfig(image_size=PROBE_SIZE, memory_budget=0),
    )
    expert.fit(normals)
    normal_map, defect_map = expert.predict([normal, defect])
    explanation = explain(defect_map)
    ok = defect_map.score > normal_map.score and bool(explanation.description)
    return CheckResult(
        "weight-free models",
        ok,
        f"{WEIGHT_FREE_BACKBONE} few-shot expert and {WEIGHT_FREE_EXPLAINER} explainer run "
        f"offline (synthetic defect {defect_map.score:.3g} vs normal {normal_map.score:.3g})",
        fix="" if ok else "reinstall the application; the built-in expert gives wrong scores",
    )


def configured_models(settings: Settings) -> list[tuple[str, str]]:
    """``(role, model name)`` for every model the settings ask for that needs weights."""
    from workstation.services.explain import vlm_name

    wanted: list[tuple[str, str]] = []
    if "fewshot" in settings.experts.enabled and settings.experts.backbone != WEIGHT_FREE_BACKBONE:
        wanted.append(("few-shot backbone", settings.experts.backbone))
    if "zeroshot" in settings.experts.enabled:
        wanted.append(("zero-shot CLIP", settings.experts.clip_model))
    vlm = vlm_name(settings.explainer)
    if vlm is not None:
        wanted.append(("explainer VLM", vlm))
    return wanted


def _short_hash(bundle_files: Sequence) -> str:
    """The sha256 of the bundle's largest file (its weights), which identifies the model."""
    largest = max(bundle_files, key=lambda f: f.size)
    return f"{largest.path} sha256 {largest.sha256[:16]}"


def check_bundles(context: DoctorContext) -> list[CheckResult]:
    """Installed offline bundles with the hash of their weights (re-hashed with --verify)."""
    from workstation.pretrained.bundles import installed_bundles
    from workstation.pretrained.weights import bundles_dir

    bundles = installed_bundles(verify=context.verify_hashes)
    if not bundles:
        return [CheckResult("bundles", True, f"none installed in {bundles_dir()}")]
    results = []
    for bundle in bundles:
        if bundle.problem:
            results.append(
                CheckResult(f"bundle {bundle.name}", False, bundle.problem, severity="optional")
            )
            continue
        state = {None: "not re-hashed", True: "hashes verified", False: "hashes DIFFER"}[
            bundle.hashes_ok
        ]
        results.append(
            CheckResult(
                f"bundle {bundle.name}",
                bundle.hashes_ok is not False,
                f"{bundle.family}, {len(bundle.files)} files, "
                f"{format_bytes(bundle.size_bytes)}, {_short_hash(bundle.files)}, {state}",
                fix=f"reinstall it: iad-workstation models install {bundle.name}.zip",
                severity="optional",
            )
        )
    return results


def _load_backbone(name: str, image_size: int) -> str:
    """Build the backbone on the CPU and run one image at its native size through it."""
    import cv2

    from workstation.experts.base import build_backbone

    backbone = build_backbone(name, device="cpu")
    normals, _ = _synthetic_images()
    image = cv2.resize(normals[0], (image_size, image_size))
    features = backbone.features([image])
    return f"loads ({features.shape[1]} feature channels)"


def _load_vlm_parts(folder: Path) -> str:
    """Config, processor and model class of a VLM, without reading its (GB of) weights.

    Enough to catch what breaks in a packaged app (a transformers model module or a
    processor file left out) without needing the RAM to hold the model.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(folder)
    model_class = AutoModelForImageTextToText._model_mapping[type(config)]
    AutoProcessor.from_pretrained(folder)
    return f"{model_class.__name__} and its processor load"


def check_models(context: DoctorContext) -> list[CheckResult]:
    """Every catalogue model: where it is, or the one line that says how to get it.

    Configured backbones are also built and run on one image, and a configured VLM's
    config, processor and model class are loaded (not its weights). Missing weights are
    ``optional``: the weight-free defaults keep the application working.
    """
    from workstation.pretrained.catalog import catalog_names, find_entry
    from workstation.pretrained.weights import resolve

    roles = {name: role for role, name in configured_models(context.settings)}
    results = []
    for name in dict.fromkeys([*roles, *catalog_names()]):
        role = f"; configured as {roles[name]}" if name in roles else ""
        try:
            found = resolve(name)
        except MissingModelError as exc:
            results.append(
                CheckResult(
                    f"model {name}", False, f"missing{role}", fix=str(exc), severity="optional"
                )
            )
            continue
        except UserError as exc:  # e.g. a configured folder without weights
            results.append(
                CheckResult(
                    f"model {name}",
                    False,
                    f"unusable{role}: {exc}",
                    fix="point the setting at a complete model folder or install its bundle",
                    severity="optional",
                )
            )
            continue
        detail = f"{found.origin}: {found.path}{role}"
        entry = find_entry(name)
        if name in roles:
            try:
                if found.family == "vlm":
                    detail += f"; {_load_vlm_parts(found.path)}"
                elif entry is not None:
                    detail += f"; {_load_backbone(name, entry.image_size)}"
            except (UserError, RuntimeError, OSError, ValueError, KeyError) as exc:
                results.append(
                    CheckResult(
                        f"model {name}",
                        False,
                        f"{detail}; does not load: {exc}",
                        fix=f"reinstall it: iad-workstation models install {name}.zip",
                        severity="optional",
                    )
                )
                continue
        results.append(CheckResult(f"model {name}", True, detail))
    return results
