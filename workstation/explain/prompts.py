"""Expert-guided prompts for the VLM explainer (Myriad / Customizable-VLM style).

General VLMs miss small defects on their own, so the prompt carries the vision expert's
knowledge: a heatmap overlay, crops around the strongest regions and the region facts in
words (count, 3 x 3 grid location, area, elongation, peak against the threshold), next to
the product's context (description, normality rules, defect vocabulary) and optionally a
normal reference image. The words live in ``resources/prompts/*.md`` so engineers can
edit them without touching code.

The same builder makes training pairs (:func:`build_chat_pair`) so the LoRA rounds see
exactly the prompt the explainer sends at inference time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image

from workstation.core import masks
from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap, Explanation, Product
from workstation.explain.regions import region_mask, usable_threshold
from workstation.paths import resources_dir

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
TEMPLATE_NAMES = ("system", "user", "strict")

Message = dict[str, Any]
"""One chat message in the transformers chat-template format."""


@dataclass(frozen=True)
class PromptOptions:
    """How much guidance goes into a prompt; smaller images mean fewer vision tokens."""

    image_side: int = 448
    crop_side: int = 224
    max_crops: int = 2
    max_regions: int = 5
    overlay: bool = True
    use_reference: bool = True

    def __post_init__(self) -> None:
        if self.image_side < 16 or self.crop_side < 16:
            raise UserError("prompt image sizes must be at least 16 pixels")
        if self.max_crops < 0 or self.max_regions < 1:
            raise UserError("max_crops must be >= 0 and max_regions >= 1")


DEFAULT_OPTIONS = PromptOptions()


@dataclass(frozen=True)
class ExplainRequest:
    """Everything one explanation is made from."""

    image: np.ndarray
    """RGB uint8 (H, W, 3)."""
    anomaly_map: AnomalyMap
    product: Product | None = None
    mask: np.ndarray | None = None
    """A region mask (e.g. from the inspector) that replaces the thresholded map."""
    reference: np.ndarray | None = None
    """One normal image of the same product, RGB uint8."""

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise UserError(
                f"explainer images must be RGB uint8 (H, W, 3); got {self.image.dtype} "
                f"{self.image.shape}"
            )


def mask_request(
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    product: Product | None = None,
    reference: np.ndarray | None = None,
) -> ExplainRequest:
    """A request for an image whose anomaly is known only as a mask (training feedback).

    The mask stands in for the expert's map at twice the threshold inside the region, so
    the region facts read like a confident expert's; no mask means a normal image.
    """
    h, w = image.shape[:2]
    binary = masks.binarize(mask) if mask is not None else np.zeros((h, w), np.uint8)
    values = binary.astype(np.float32) * 2.0
    anomaly_map = AnomalyMap(values, score=float(values.max()), threshold=1.0)
    return ExplainRequest(
        image=image,
        anomaly_map=anomaly_map,
        product=product,
        mask=binary if binary.any() else None,
        reference=reference,
    )


@dataclass(frozen=True)
class Prompt:
    """Chat messages (``{"type": "image"}`` placeholders) plus the images in order."""

    messages: list[Message]
    images: list[Image.Image]
    hash: str
    """Identifies the wording and settings (not the image or map, which are hashed apart)."""
    strict: bool = False


@dataclass(frozen=True)
class ChatPair:
    """A training example: the prompt, the assistant's answer, and the answer text alone."""

    messages: list[Message]
    images: list[Image.Image]
    target: str
    prompt_hash: str = field(default="")


def load_template(name: str) -> str:
    """Read ``resources/prompts/<name>.md``; a missing file is a UserError naming it."""
    path = resources_dir() / "prompts" / f"{name}.md"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(
            f"prompt template {path} cannot be read ({exc.strerror}); restore it from the "
            "application's resources/prompts folder"
        ) from exc


def render(template: str, values: dict[str, str], *, name: str = "template") -> str:
    """Fill ``{placeholder}`` names; other braces (JSON examples) stay as written."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise UserError(
                f"prompt template {name!r} uses unknown placeholder {{{key}}}; "
                f"known: {', '.join(sorted(values))}"
            )
        return values[key]

    return PLACEHOLDER.sub(fill, template)


def region_facts(
    request: ExplainRequest, regions: list[masks.Region], options: PromptOptions
) -> str:
    """The expert's findings as short lines a language model can read."""
    amap = request.anomaly_map
    threshold = usable_threshold(amap)
    lines = []
    if threshold is not None:
        verdict = "anomalous" if amap.score >= threshold else "normal"
        lines.append(
            f"- image score {amap.score / threshold:.2f}x the threshold (expert verdict: {verdict})"
        )
    else:
        lines.append(f"- image score {amap.score:.3g} (uncalibrated, no threshold)")
    if not regions:
        lines.append("- no region exceeds the threshold")
        return "\n".join(lines)
    lines.append(f"- {len(regions)} region(s) above the threshold")
    for index, region in enumerate(regions[: options.max_regions], start=1):
        shape = "elongated" if region.elongation >= 3 else "compact"
        peak = ""
        if region.peak is not None and threshold is not None:
            peak = f", peak {region.peak / threshold:.1f}x the threshold"
        lines.append(
            f"- region {index}: {region.location}, {100 * region.area_fraction:.2f}% of the "
            f"image, {shape} (elongation {region.elongation:.1f}){peak}"
        )
    return "\n".join(lines)


def _fit(image: np.ndarray, side: int) -> Image.Image:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return Image.fromarray(cv2.resize(image, size, interpolation=interpolation))


def heatmap_overlay(image: np.ndarray, request: ExplainRequest, mask: np.ndarray) -> np.ndarray:
    """The image with the map in colour (threshold at mid-scale) and region outlines in white."""
    values = request.anomaly_map.map.astype(np.float32)
    threshold = usable_threshold(request.anomaly_map) or float(np.nanmax(values)) / 2 or 1.0
    scaled = np.clip(np.nan_to_num(values / (2 * threshold)), 0, 1)
    colour = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if colour.shape[:2] != (h, w):
        colour = cv2.resize(colour, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    blended = cv2.addWeighted(image, 0.55, colour, 0.45, 0)
    blended[masks.outline(mask, thickness=max(1, min(h, w) // 200)) > 0] = 255
    return blended


def region_crops(
    image: np.ndarray, regions: list[masks.Region], map_shape: tuple[int, int], count: int
) -> list[np.ndarray]:
    """Square-ish crops around the largest regions with context around them."""
    h, w = image.shape[:2]
    sy, sx = h / map_shape[0], w / map_shape[1]
    crops = []
    for region in regions[:count]:
        x0, y0, x1, y1 = region.bbox
        cx, cy = (x0 + x1) / 2 * sx, (y0 + y1) / 2 * sy
        half = max((x1 - x0) * sx, (y1 - y0) * sy, min(h, w) / 8) * 0.75
        left, top = int(max(0, cx - half)), int(max(0, cy - half))
        right, bottom = int(min(w, cx + half)) or 1, int(min(h, cy + half)) or 1
        crops.append(image[top : max(bottom, top + 1), left : max(right, left + 1)])
    return crops


def _bullets(items: tuple[str, ...], empty: str) -> str:
    return "\n".join(f"- {item}" for item in items) if items else f"- {empty}"


def _context(product: Product | None) -> dict[str, str]:
    if product is None:
        return {
            "product_name": "unknown product",
            "product_description": "",
            "normality_rules": "- (none given)",
            "defect_vocabulary": "(none given)",
        }
    return {
        "product_name": product.name,
        "product_description": product.description,
        "normality_rules": _bullets(product.normality_rules, "(none given)"),
        "defect_vocabulary": ", ".join(product.defect_vocabulary) or "(none given)",
    }


def _image_digest(image: Image.Image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()[:16]


def build_prompt(
    request: ExplainRequest, *, options: PromptOptions = DEFAULT_OPTIONS, strict: bool = False
) -> Prompt:
    """Messages and images for one explanation; ``strict`` adds the retry instruction."""
    mask = region_mask(request.anomaly_map, request.mask)
    values = request.anomaly_map.map if request.mask is None else None
    regions = masks.analyze_regions(mask, values)
    image = request.image
    parts: list[tuple[str, Image.Image]] = [
        ("the part under inspection", _fit(image, options.image_side))
    ]
    if options.overlay:
        parts.append(
            (
                "the same part with the expert's anomaly heatmap (red = anomalous, white outline = "
                "above threshold)",
                _fit(heatmap_overlay(image, request, mask), options.image_side),
            )
        )
    for index, crop in enumerate(
        region_crops(image, regions, mask.shape, options.max_crops), start=1
    ):
        parts.append((f"close-up of region {index}", _fit(crop, options.crop_side)))
    if options.use_reference and request.reference is not None:
        parts.append(("a normal reference part", _fit(request.reference, options.image_side)))
    values_text = _context(request.product) | {
        "image_list": "; ".join(f"({i}) {label}" for i, (label, _) in enumerate(parts, start=1)),
        "region_facts": region_facts(request, regions, options),
        "locations": ", ".join(masks.ALL_LOCATIONS),
    }
    user_text = render(load_template("user"), values_text, name="user")
    if strict:
        user_text = f"{user_text}\n\n{load_template('strict')}"
    content: list[dict[str, Any]] = []
    for index, (label, _) in enumerate(parts, start=1):
        content.append({"type": "text", "text": f"Image {index}: {label}."})
        content.append({"type": "image"})
    content.append({"type": "text", "text": user_text})
    messages: list[Message] = [
        {"role": "system", "content": [{"type": "text", "text": load_template("system")}]},
        {"role": "user", "content": content},
    ]
    images = [picture for _, picture in parts]
    # the reference image is chosen by the user, so it is part of "the prompt"; the inspected
    # image and map are hashed separately by the cache
    reference = images[-1] if options.use_reference and request.reference is not None else None
    digest = hashlib.sha256(
        json.dumps(
            {
                "messages": messages,
                "options": [options.image_side, options.crop_side, options.max_crops],
                "reference": _image_digest(reference) if reference is not None else None,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    return Prompt(messages=messages, images=images, hash=digest, strict=strict)


def answer_text(explanation: Explanation) -> str:
    """The exact JSON text the model is trained to produce for ``explanation``."""
    return json.dumps(explanation.to_dict(), ensure_ascii=False)


def build_chat_pair(
    request: ExplainRequest, target: Explanation, *, options: PromptOptions = DEFAULT_OPTIONS
) -> ChatPair:
    """A supervised example for the VLM LoRA rounds: prompt + the corrected explanation.

    Training masks everything but the assistant turn; ``target`` is that turn's text.
    """
    prompt = build_prompt(request, options=options)
    text = answer_text(target)
    messages = [
        *prompt.messages,
        {"role": "assistant", "content": [{"type": "text", "text": text}]},
    ]
    return ChatPair(messages=messages, images=prompt.images, target=text, prompt_hash=prompt.hash)
