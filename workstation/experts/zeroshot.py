"""Zero-shot expert in the WinCLIP family: anomaly maps from words, no normal image needed.

Text side, a compositional prompt ensemble: *state* phrases (normal: "flawless screw",
"screw without defect", ...; anomalous: "damaged screw", "screw with pitting" for every
word of the product's defect vocabulary, ...) are put into photo *templates* ("a cropped
photo of the {}."), each state once more followed by the product description as context,
and the normalised text embeddings are averaged into one vector per class.

Image side, at CLIP's native resolution:
- *windows*: every k x k square of patches (stride 1, k in ``windows``) is encoded on
  its own (class token + only those patch tokens through the transformer), scored
  against the two class vectors, and each patch takes the harmonic mean of the scores
  of the windows that cover it (WinCLIP's harmonic aggregation: one normal-looking
  window is enough to pull a patch down, which suppresses halo false positives);
- *patches*: the final block's patch tokens projected into the joint space and scored
  directly.
The per-scale maps are averaged; the image score is the mean of the class-token
probability and the map's maximum. A probability here is ``softmax(scale * cos)`` over
(normal, anomalous), taken for "anomalous".

``fit`` needs no normal images: it only encodes (and caches) the text side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from workstation.core.errors import UserError
from workstation.core.types import AnomalyMap, Product
from workstation.experts.base import ProgressFn
from workstation.experts.features import grid_to_map, resize_rgb, to_rgb_uint8

if TYPE_CHECKING:
    import torch

    from workstation.experts.backbones.clip import ClipBackbone

NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ANOMALOUS_STATES: tuple[str, ...] = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
DEFECT_STATE = "{object} with {defect}"
DESCRIBED_TEMPLATE = "a photo of a {state}. {context}"
TEMPLATES: tuple[str, ...] = (
    "a cropped photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
    "a close-up photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of a {}.",
    "a photo of the {}.",
    "a photo of a small {}.",
    "a photo of a large {}.",
    "a photo of the {} for visual inspection.",
    "a photo of a {} for visual inspection.",
    "a photo of the {} for anomaly detection.",
    "a photo of a {} for anomaly detection.",
    "there is a {} in the scene.",
    "this is one {} in the scene.",
)
_EPS = 1e-6


@dataclass(frozen=True)
class PromptSet:
    normal: tuple[str, ...]
    anomalous: tuple[str, ...]


@dataclass(frozen=True)
class ZeroShotConfig:
    """``windows`` are window sides in patches (WinCLIP: 2 and 3 on a 15 x 15 grid).

    ``smoothing`` is the Gaussian sigma in native-resolution pixels (scaled to each image).
    """

    windows: tuple[int, ...] = (2, 3)
    use_patch_map: bool = True
    smoothing: float = 4.0
    batch_size: int = 4

    def __post_init__(self) -> None:
        if any(w < 1 for w in self.windows):
            raise UserError("zero-shot window sizes must be at least one patch")
        if not self.windows and not self.use_patch_map:
            raise UserError("the zero-shot expert needs window sizes or the patch map")
        if self.batch_size < 1:
            raise UserError("zero-shot batch size must be at least 1")


def object_phrase(product: Product) -> str:
    """The product's name as words: ``ball_screw_drive`` -> ``ball screw drive``."""
    words = product.name.replace("_", " ").replace("-", " ").split()
    return " ".join(words) or "object"


def build_prompts(product: Product) -> PromptSet:
    """The compositional ensemble for ``product`` (name, description, defect vocabulary)."""
    thing = object_phrase(product)
    normal_states = [state.format(thing) for state in NORMAL_STATES]
    anomalous_states = [state.format(thing) for state in ANOMALOUS_STATES]
    for defect in product.defect_vocabulary:
        word = " ".join(defect.replace("_", " ").split())
        if word:
            anomalous_states.append(DEFECT_STATE.format(object=thing, defect=word))
    context = " ".join(product.description.split())

    def expand(states: list[str]) -> tuple[str, ...]:
        prompts = [template.format(state) for state in states for template in TEMPLATES]
        if context:  # one described prompt per state: the description is long, CLIP text slow
            prompts += [DESCRIBED_TEMPLATE.format(state=state, context=context) for state in states]
        return tuple(dict.fromkeys(prompts))  # drop duplicates, keep order

    return PromptSet(normal=expand(normal_states), anomalous=expand(anomalous_states))


class ZeroShotExpert:
    """WinCLIP-style zero-shot anomaly maps for one product, on a CLIP backbone."""

    name = "zeroshot"

    def __init__(
        self,
        backbone: ClipBackbone,
        product: Product,
        config: ZeroShotConfig | None = None,
    ) -> None:
        self.backbone = backbone
        self.product = product
        self.config = config or ZeroShotConfig()
        self.prompts = build_prompts(product)
        self._text: torch.Tensor | None = None

    def fit(
        self, normals: Sequence[np.ndarray] = (), *, progress: ProgressFn | None = None
    ) -> None:
        """Encode the prompts once; normal images are not needed (and not used)."""
        self.text_features()
        if progress:
            progress(1, 1)

    def text_features(self) -> torch.Tensor:
        """(2, E): the averaged, normalised normal and anomalous class embeddings."""
        import torch
        import torch.nn.functional as F

        if self._text is None:
            classes = []
            for prompts in (self.prompts.normal, self.prompts.anomalous):
                embeddings = torch.cat(
                    [self.backbone.encode_text(prompts[i : i + 64])
                     for i in range(0, len(prompts), 64)]
                )
                classes.append(F.normalize(embeddings.mean(dim=0), dim=-1))
            self._text = torch.stack(classes)
        return self._text

    def _anomaly_probability(self, embeddings: torch.Tensor) -> torch.Tensor:
        """P(anomalous) for (..., E) unit embeddings."""
        logits = self.backbone.logit_scale * embeddings @ self.text_features().T
        return logits.softmax(dim=-1)[..., 1]

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        results: list[AnomalyMap] = []
        for start in range(0, len(images), self.config.batch_size):
            results += self._predict_batch(images[start : start + self.config.batch_size])
        return results

    def _predict_batch(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        rgb = [to_rgb_uint8(image) for image in images]
        native = (self.backbone.image_size, self.backbone.image_size)
        pixels = self.backbone.to_tensor([resize_rgb(im, native) for im in rgb], native=True)
        image_probability, grids = self.score_grids(pixels)
        results = []
        for i, image in enumerate(rgb):
            height, width = image.shape[:2]
            sigma = self.config.smoothing * max(height, width) / self.backbone.image_size
            anomaly_map = grid_to_map(grids[i], (height, width), sigma=sigma)
            score = 0.5 * (float(image_probability[i]) + float(grids[i].max()))
            results.append(AnomalyMap(map=anomaly_map, score=score, expert=self.name))
        return results

    def score_grids(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(class-token P(anomalous) (B,), patch-grid maps (B, h, w)) for a native batch."""
        import torch

        embedded = self.backbone.encode_image(pixels)
        rows, cols = embedded.grid
        maps = []
        if self.config.use_patch_map:
            maps.append(self._anomaly_probability(embedded.patches))
        for window in self.config.windows:
            if window > min(rows, cols):
                continue
            window_embeddings, index = self.backbone.encode_windows(pixels, window)
            maps.append(harmonic_patch_scores(
                self._anomaly_probability(window_embeddings), index, rows * cols
            ))
        if not maps:
            raise UserError(
                f"every zero-shot window is larger than the {rows}x{cols} patch grid; "
                "use smaller windows or enable the patch map"
            )
        grid = torch.stack(maps).mean(dim=0).reshape(-1, rows, cols)
        image_probability = self._anomaly_probability(embedded.global_)
        return image_probability.cpu().numpy(), grid.float().cpu().numpy()


def create_zeroshot_expert(
    product: Product,
    *,
    model: str = "clip-b16-plus",
    device: str = "cpu",
    config: ZeroShotConfig | None = None,
) -> ZeroShotExpert:
    """The zero-shot expert on CLIP ``model`` (catalogue name, bundle or folder path).

    Raises MissingModelError (one line, how to get it) when the weights are not here.
    """
    from workstation.experts.backbones import build_clip_backbone

    return ZeroShotExpert(build_clip_backbone(model, device=device), product, config)


def harmonic_patch_scores(
    window_scores: torch.Tensor, index: np.ndarray, n_patches: int
) -> torch.Tensor:
    """Per-patch harmonic mean of the scores of the windows covering it.

    ``window_scores`` is (B, n_windows); ``index`` (n_windows, k*k) lists each window's
    patches. Patches no window covers get 0.
    """
    import torch

    batch = window_scores.shape[0]
    flat = torch.as_tensor(index.ravel(), device=window_scores.device)
    inverse = (1.0 / window_scores.clamp_min(_EPS)).repeat_interleave(index.shape[1], dim=1)
    sums = torch.zeros(batch, n_patches, device=window_scores.device).index_add_(1, flat, inverse)
    counts = torch.zeros(n_patches, device=window_scores.device).index_add_(
        0, flat, torch.ones_like(flat, dtype=torch.float32)
    )
    return torch.where(counts > 0, counts / sums.clamp_min(_EPS), torch.zeros_like(sums))
