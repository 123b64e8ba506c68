"""Self-taught expert: a small segmentation network that learned the product's normal look.

Trained by ``training.selftaught`` from the product's own normal images and synthetic
defects painted into them (``workstation.experts.synthetic``), from scratch: no downloaded
weights. At inference it is one convolutional pass at the experts' working size; its map
is the per-pixel defect probability, its image score the peak of the slightly smoothed map
(a pit a few pixels wide must be able to decide the image on its own).

It joins the fusion like the learned adapter: its probability is put in normal units (its
99th percentile on normal images it never trained on) and added to the few-shot map, so
the two vote together. To keep that unit honest it remembers small thumbnails of the
normals it trained on (:class:`NormalFingerprints`); the pipeline calibrates on the others.

The encoder starts from random weights (``encoder="scratch"``, the default) or from the
ImageNet weights of a pip package (``"efficientnet-lite0"``, see
:mod:`workstation.experts.imagenet_cnn`); the decoder always starts from random weights.

A model folder holds ``selftaught.json`` (config: architecture, encoder, working shape,
input statistics), ``selftaught.pt`` (weights) and ``normals.npy`` (fingerprints). A folder
made by another architecture version is refused with a message that says to train a new
round; a folder written before encoders were a choice has no ``encoder`` and is scratch.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from workstation.core.errors import UserError
from workstation.core.imageio import write_bytes_atomic
from workstation.core.types import AnomalyMap
from workstation.experts.features import resize_rgb, to_rgb_uint8
from workstation.experts.model_folder import read_model_config

if TYPE_CHECKING:
    from workstation.experts.pipeline import InspectionPipeline

SELFTAUGHT_FORMAT = "iad-selftaught/1"
ARCHITECTURE = "lite-unet/1"
"""Bump when the layer layout changes: weights of another layout cannot be loaded."""
CONFIG_FILE = "selftaught.json"
WEIGHTS_FILE = "selftaught.pt"
FINGERPRINTS_FILE = "normals.npy"
SIZE_MULTIPLE = 16
"""The network halves the resolution four times; working sides are multiples of this."""
THUMBNAIL = 32
SAME_IMAGE_LEVELS = 0.25
"""Mean absolute difference (gray levels) of 32x32 thumbnails below which two images are
the same normal. Measured: one bsdata file decoded at two sizes differs by at most 0.02,
the two most alike different frames of its 45 train/good images by 1.37, demo plates by
4.9. At 16x16 and 2 levels (the first choice) most bsdata frames looked "seen", which left
one normal to calibrate on. Too alike only ever keeps an image out of calibration."""


Encoder = Literal[
    "scratch", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "mobilenet-v2"
]
ENCODERS: tuple[str, ...] = get_args(Encoder)
"""``scratch``: random initial weights, no package needed. The others are ImageNet trunks
whose weights ship in a pip package; only training needs that package (a saved model
carries all its weights), building the architecture needs timm."""


class SelfTaughtError(UserError):
    """A self-taught model folder that cannot be used (missing, damaged, other layout)."""


@dataclass(frozen=True)
class SelfTaughtConfig:
    shape: tuple[int, int]
    """Working (H, W) the network sees, a multiple of SIZE_MULTIPLE on both sides."""
    mean: tuple[float, float, float]
    """Per-channel RGB mean (0-255) of the training normals: the input standardisation."""
    std: tuple[float, float, float]
    width: int = 12
    """Channels of the full-resolution stage; deeper stages have 2, 4, 8 and 10 times it."""
    score_sigma: float = 2.0
    """Gaussian smoothing (working pixels) of the probability map before its peak is taken."""
    encoder: Encoder = "scratch"
    """Which encoder the network has (:data:`ENCODERS`); the decoder is the same for all."""
    architecture: str = ARCHITECTURE
    format: str = SELFTAUGHT_FORMAT
    trained: dict[str, float] = field(default_factory=dict)
    """What the round recorded (steps, seconds, normals): shown in the Models dock."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if any(side % SIZE_MULTIPLE for side in self.shape):
            raise SelfTaughtError(f"working shape {self.shape} is not a multiple of 16")
        if self.width < 1 or min(self.std) <= 0:
            raise SelfTaughtError("self-taught width must be >= 1 and std > 0")
        if self.encoder not in ENCODERS:
            raise SelfTaughtError(
                f"self-taught encoder {self.encoder!r} is not one this version knows "
                f"({', '.join(ENCODERS)}); train a new self-taught round"
            )


def _conv(inputs: int, outputs: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


def _decoder(skips: Sequence[int], outs: Sequence[int]) -> nn.ModuleList:
    """The up path, deepest level first: level ``i`` joins what comes from below
    (``outs[i + 1]`` channels, or the deepest skip's) with skip ``i`` into ``outs[i]``."""
    below = [*outs[1:], skips[-1]]
    return nn.ModuleList(
        _conv(below[i] + skips[i], outs[i]) for i in reversed(range(len(outs)))
    )


class SkipNet(nn.Module):
    """A U-Net's shared half: ``encode`` gives skips at strides 1, 2, .. 16 (finest
    first); ``up`` merges them back to full resolution and ``head`` gives the logit."""

    up: nn.ModuleList
    head: nn.Conv2d

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        skips = self.encode(images)
        x = skips.pop()
        for stage in self.up:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], dim=1))
        return self.head(x)

    def parameter_groups(self, pretrained_lr_scale: float) -> list[dict[str, object]]:
        """Optimiser groups; a group's ``lr_scale`` multiplies the scheduled rate."""
        del pretrained_lr_scale
        return [{"params": list(self.parameters()), "lr_scale": 1.0}]


class LiteUNet(SkipNet):
    """Encoder-decoder with skip connections, thin at full resolution.

    Most of the compute of a plain U-Net sits in its full-resolution stages, which only
    need to place edges precisely; here they get one thin convolution each, and the
    capacity sits at 1/2 to 1/16 resolution where the context is. That makes a training
    step about twice as cheap on a CPU as a plain 16-channel U-Net of the same depth.
    """

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        channels = [width, 2 * width, 4 * width, 8 * width, 10 * width]
        self.stem = _conv(3, channels[0])
        self.down = nn.ModuleList(
            nn.Sequential(
                _conv(channels[i], channels[i + 1], 2), _conv(channels[i + 1], channels[i + 1])
            )
            for i in range(4)
        )
        self.up = _decoder(channels, channels[:4])
        self.head = nn.Conv2d(channels[0], 1, 1)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        skips = [self.stem(images)]
        for stage in self.down:
            skips.append(stage(skips[-1]))
        return skips


class ImageNetUNet(SkipNet):
    """The same decoder on an ImageNet trunk's stages at strides 2, 4, 8 and 16.

    The trunk replaces the scratch encoder's four down stages; one thin full-resolution
    convolution (random weights) keeps edges precise, as in :class:`LiteUNet`. The
    trunk's BatchNorm layers stay in eval mode in training: their statistics come from
    ImageNet, and a round's batches of one product's crops would overwrite them.
    """

    def __init__(self, encoder: str, width: int = 12, *, pretrained: bool = False) -> None:
        from workstation.experts.imagenet_cnn import imagenet_trunk, layout

        super().__init__()
        spec = layout(encoder)
        stages = [s for s in spec.pyramid if spec.strides[s - 1] <= SIZE_MULTIPLE]
        self.trunk, channels, _ = imagenet_trunk(encoder, stages=stages, pretrained=pretrained)
        self.stem = _conv(3, width)
        self.up = _decoder([width, *channels], [width, 2 * width, 4 * width, 8 * width])
        self.head = nn.Conv2d(width, 1, 1)

    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [self.stem(images), *self.trunk(images)]

    def train(self, mode: bool = True) -> ImageNetUNet:
        super().train(mode)
        for module in self.trunk.modules():
            if isinstance(module, nn.BatchNorm2d):  # timm's BatchNormAct2d too
                module.eval()
        return self

    def parameter_groups(self, pretrained_lr_scale: float) -> list[dict[str, object]]:
        trunk = {id(p) for p in self.trunk.parameters()}
        fresh = [p for p in self.parameters() if id(p) not in trunk]
        return [
            {"params": fresh, "lr_scale": 1.0},
            {"params": list(self.trunk.parameters()), "lr_scale": pretrained_lr_scale},
        ]


def build_network(config: SelfTaughtConfig, *, pretrained: bool = False) -> SkipNet:
    """The network ``config`` describes. ``pretrained``: start an ImageNet encoder from
    its packaged weights (a new round); otherwise its weights are random until a saved
    state is loaded, so loading a model never needs the weight package."""
    if config.architecture != ARCHITECTURE:
        raise SelfTaughtError(
            f"this self-taught model has architecture {config.architecture!r}, which this "
            f"version of the application cannot load (it knows {ARCHITECTURE!r}); train a "
            "new self-taught round for the product"
        )
    if config.encoder == "scratch":
        return LiteUNet(config.width)
    return ImageNetUNet(config.encoder, config.width, pretrained=pretrained)


def encoder_statistics(encoder: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) on the 0-255 scale an ImageNet encoder's weights expect, or None for
    ``scratch`` (which standardises with the product's own statistics)."""
    if encoder == "scratch":
        return None
    from workstation.experts.imagenet_cnn import input_normalisation

    mean, std = input_normalisation(encoder)
    return tuple(255.0 * v for v in mean), tuple(255.0 * v for v in std)


def standardise(images: Sequence[np.ndarray], config: SelfTaughtConfig) -> torch.Tensor:
    """(N, 3, H, W) float32 network input from RGB uint8 images already at ``config.shape``."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    return (batch - mean) / std


def peak_score(probability: np.ndarray, sigma: float) -> float:
    """The image score: the highest value of the map after a slight Gaussian smoothing."""
    smoothed = cv2.GaussianBlur(probability, (0, 0), sigmaX=sigma) if sigma > 0 else probability
    return float(smoothed.max())


def thumbnail(image: np.ndarray) -> np.ndarray:
    return cv2.resize(to_rgb_uint8(image), (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)


class NormalFingerprints:
    """Which normal images a model trained on, recognised again from tiny thumbnails."""

    def __init__(self, thumbnails: np.ndarray | None = None) -> None:
        empty = np.zeros((0, THUMBNAIL, THUMBNAIL, 3), np.uint8)
        self.thumbnails = empty if thumbnails is None else thumbnails.astype(np.uint8)

    @classmethod
    def of(cls, images: Sequence[np.ndarray]) -> NormalFingerprints:
        if not images:
            return cls()
        return cls(np.stack([thumbnail(im) for im in images]))

    def contains(self, image: np.ndarray) -> bool:
        if len(self.thumbnails) == 0:
            return False
        probe = thumbnail(image).astype(np.int16)[None]
        difference = np.abs(self.thumbnails.astype(np.int16) - probe).mean(axis=(1, 2, 3))
        return bool(difference.min() < SAME_IMAGE_LEVELS)


class SelfTaughtExpert:
    """Expert protocol over a trained network (``fit`` is a no-op: it already learned)."""

    name = "selftaught"

    def __init__(
        self,
        network: nn.Module,
        config: SelfTaughtConfig,
        *,
        fingerprints: NormalFingerprints | None = None,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> None:
        self.network = network.to(device).eval()
        self.config = config
        self.fingerprints = fingerprints or NormalFingerprints()
        self.device = device
        self.batch_size = batch_size

    def fit(self, normals: Sequence[np.ndarray], *, progress: object = None) -> None:
        del normals, progress

    def has_seen(self, image: np.ndarray) -> bool:
        """True when ``image`` was one of the normals this network trained on."""
        return self.fingerprints.contains(image)

    def probability_grids(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-pixel defect probability at the working shape, one (H, W) array per image."""
        out: list[np.ndarray] = []
        on_cuda = self.device.startswith("cuda")
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = [
                    resize_rgb(to_rgb_uint8(im), self.config.shape)
                    for im in images[start : start + self.batch_size]
                ]
                batch = standardise(chunk, self.config).to(self.device)
                with torch.autocast("cuda", enabled=on_cuda):
                    logits = self.network(batch)
                out.extend(torch.sigmoid(logits.float())[:, 0].cpu().numpy())
        return out

    def predict(self, images: Sequence[np.ndarray]) -> list[AnomalyMap]:
        maps = []
        for image, grid in zip(images, self.probability_grids(images), strict=True):
            height, width = image.shape[:2]
            heat = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
            maps.append(
                AnomalyMap(
                    map=heat.astype(np.float32),
                    score=peak_score(grid, self.config.score_sigma),
                    expert=self.name,
                )
            )
        return maps

    # --- persistence ------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write the three files, each through a temporary name, so a crash leaves no
        half-written model that looks complete."""
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        weights, thumbnails = io.BytesIO(), io.BytesIO()
        torch.save(state, weights)
        np.save(thumbnails, self.fingerprints.thumbnails)
        write_bytes_atomic(folder / WEIGHTS_FILE, weights.getvalue())
        write_bytes_atomic(folder / FINGERPRINTS_FILE, thumbnails.getvalue())
        config = json.dumps(asdict(self.config), indent=2).encode("utf-8")
        write_bytes_atomic(folder / CONFIG_FILE, config)
        return folder

    @classmethod
    def load(cls, folder: Path, *, device: str = "cpu") -> SelfTaughtExpert:
        config = read_config(folder)
        network = build_network(config)
        try:
            state = torch.load(Path(folder) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
            network.load_state_dict(state)
        except FileNotFoundError:
            raise SelfTaughtError(
                f"{folder} has no {WEIGHTS_FILE}; train the round again"
            ) from None
        except Exception as exc:  # torch raises a different type for each kind of damage
            raise SelfTaughtError(
                f"the self-taught weights in {folder} do not fit its config "
                f"({str(exc).splitlines()[0]}); train a new self-taught round"
            ) from None
        fingerprints_path = Path(folder) / FINGERPRINTS_FILE
        fingerprints = (
            NormalFingerprints(np.load(fingerprints_path, allow_pickle=False))
            if fingerprints_path.is_file()
            else NormalFingerprints()
        )
        return cls(network, config, fingerprints=fingerprints, device=device)


def read_config(folder: Path) -> SelfTaughtConfig:
    return read_model_config(
        folder,
        SelfTaughtConfig,
        file=CONFIG_FILE,
        format=SELFTAUGHT_FORMAT,
        label="self-taught",
        error=SelfTaughtError,
    )


def attach(pipeline: InspectionPipeline, folder: Path) -> None:
    """Add a trained self-taught network to ``pipeline`` (its registration in
    ``core.kinds``); it joins the fusion additively."""
    pipeline.add_expert(SelfTaughtExpert.load(folder, device=pipeline.device), additive=True)
