"""Training the self-taught expert's network: normal crops against synthetic defects.

Each step draws random crops of the product's normal images at the experts' working size;
about half get a synthetic defect painted in (``workstation.experts.synthetic``), and
inspector-corrected defects, when there are any, are cropped around their masks as real
positives. The network is fully convolutional, so it trains on small crops (cheap on a
CPU) and predicts whole images.

The schedule runs on *progress*, the larger of steps done / steps and seconds spent /
budget, so a round ends on time on a slow CPU and after its steps on a GPU, always with
the full warm-up and cosine decay. A checkpoint is written every few seconds: a killed
round resumes where it stopped; a checkpoint of another layout is refused.

With an ImageNet encoder (``encoder``), the encoder starts from its packaged weights and
learns at a tenth of the rate of the decoder, which starts from random weights.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import distributed
from training.kinds.selftaught import SelfTaughtHyperparameters
from training.losses import dice_loss, focal_loss
from workstation.core.errors import UserError
from workstation.core.imageio import write_bytes_atomic
from workstation.experts.selftaught import (
    SelfTaughtConfig,
    SelfTaughtError,
    build_network,
    standardise,
)
from workstation.experts.synthetic import DefectSynthesizer

CHECKPOINT_FILE = "checkpoint.pt"
WARMUP = 0.05
"""Share of progress spent warming the learning rate up from a tenth of its peak."""


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite: the round stops, nothing is promoted."""


@dataclass(frozen=True)
class TrainingRecord:
    steps: int
    seconds: float
    final_loss: float
    resumed_from_step: int = 0


StepFn = Callable[[int, int, float, float], None]
"""``on_step(step, planned_steps, loss, progress 0-1)``; raise from it to stop."""


def input_statistics(normals: Sequence[np.ndarray]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the normals (0-255), accumulated image by image."""
    total = np.zeros(3)
    squares = np.zeros(3)
    count = 0
    for image in normals:
        pixels = image.reshape(-1, 3).astype(np.float64)
        total += pixels.sum(axis=0)
        squares += (pixels * pixels).sum(axis=0)
        count += pixels.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0)) + 1.0
    return tuple(mean.tolist()), tuple(std.tolist())


class CropSampler:
    """Batches of (crop, mask): normal, synthetic defect, or around a real defect."""

    def __init__(
        self,
        normals: Sequence[np.ndarray],
        defects: Sequence[tuple[np.ndarray, np.ndarray]],
        hyper: SelfTaughtHyperparameters,
        rng: np.random.Generator,
    ) -> None:
        self.normals = list(normals)
        self.defects = [(image, mask) for image, mask in defects if mask.any()]
        self.hyper = hyper
        self.rng = rng
        self.synthesizer = DefectSynthesizer(self.normals, hyper.mix())
        height, width = self.normals[0].shape[:2]
        self.crop = min(hyper.crop, height, width)

    def _window(self, shape: tuple[int, ...], around: np.ndarray | None = None) -> tuple[int, int]:
        """A crop origin. Origins are drawn half a crop beyond the image and clamped, so
        pixels near the border are seen about as often as the centre; with plain uniform
        origins a corner pixel is in almost no crop and the network learns nothing there
        (on bsdata it then flagged the same bright corner in every image)."""
        height, width = shape[:2]
        c = self.crop
        if around is None:
            y = int(self.rng.integers(-(c // 2), height - c // 2 + 1))
            x = int(self.rng.integers(-(c // 2), width - c // 2 + 1))
            return min(max(y, 0), height - c), min(max(x, 0), width - c)
        ys, xs = np.nonzero(around)
        pick = int(self.rng.integers(ys.size))
        y = int(np.clip(ys[pick] - self.rng.integers(c), 0, height - c))
        x = int(np.clip(xs[pick] - self.rng.integers(c), 0, width - c))
        return y, x

    def _lighting(self, crop: np.ndarray) -> np.ndarray:
        jitter = self.hyper.lighting_jitter
        if jitter <= 0:
            return crop
        gain = self.rng.uniform(1 - jitter, 1 + jitter)
        offset = self.rng.uniform(-25 * jitter, 25 * jitter)
        return np.clip(crop.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)

    def example(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.crop
        defective = self.rng.random() < self.hyper.defect_probability
        if defective and self.defects and self.rng.random() < self.hyper.real_defect_share:
            image, mask = self.defects[int(self.rng.integers(len(self.defects)))]
            y, x = self._window(image.shape, around=mask)
            crop = self._lighting(image[y : y + c, x : x + c])
            return crop, mask[y : y + c, x : x + c].astype(np.uint8)
        image = self.normals[int(self.rng.integers(len(self.normals)))]
        y, x = self._window(image.shape)
        crop = self._lighting(image[y : y + c, x : x + c])
        if not defective:
            return crop, np.zeros((c, c), np.uint8)
        painted = self.synthesizer.make(crop, self.rng)
        return painted.image, painted.mask

    def batch(self) -> tuple[list[np.ndarray], torch.Tensor]:
        crops, masks = zip(*(self.example() for _ in range(self.hyper.batch_size)), strict=True)
        return list(crops), torch.from_numpy(np.stack(masks)).float()[:, None]


def learning_rate(progress: float, peak: float) -> float:
    """Linear warm-up from peak/10, then cosine decay to peak/100."""
    if progress < WARMUP:
        return peak * (0.1 + 0.9 * progress / WARMUP)
    t = min(1.0, (progress - WARMUP) / (1 - WARMUP))
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def _checkpoint_state(
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    config: SelfTaughtConfig,
    *,
    step: int,
    seconds: float,
    rng: np.random.Generator,
    rank_rngs: list[dict[str, Any]] | None = None,
) -> bytes:
    state = {
        "config": asdict(config),
        "network": network.state_dict(),
        "optimiser": optimiser.state_dict(),
        "step": step,
        "seconds": seconds,
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
    }
    if rank_rngs is not None:
        state["rank_rngs"] = rank_rngs  # each rank's crop stream, for a distributed resume
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _resume(
    path: Path,
    network: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    config: SelfTaughtConfig,
    rng: np.random.Generator,
) -> tuple[int, float]:
    """Load a checkpoint into the network and optimiser; (step, seconds) it had reached."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a different type for each kind of damage
        raise SelfTaughtError(
            f"the checkpoint {path} is damaged ({exc}); delete it to start the round afresh"
        ) from None
    saved = state.get("config", {}) if isinstance(state, dict) else {}
    saved = {"encoder": "scratch", **saved}  # checkpoints from before encoders were a choice
    mine = asdict(config)
    keys = ("architecture", "encoder", "width", "shape", "format")
    if any(_plain(saved.get(k)) != _plain(mine[k]) for k in keys):
        raise SelfTaughtError(
            f"the checkpoint {path} was written by another network layout "
            f"({saved.get('architecture')!r}, {saved['encoder']} encoder, width "
            f"{saved.get('width')}, shape {saved.get('shape')}) than this round builds "
            f"({config.architecture!r}, {config.encoder} encoder, width {config.width}, "
            f"shape {list(config.shape)}); delete it to start afresh"
        )
    network.load_state_dict(state["network"])
    optimiser.load_state_dict(state["optimiser"])
    # Under torchrun each rank continues its own crop stream; a rank the checkpoint has no
    # stream for (more processes than wrote it) goes on from its own seed.
    streams = state.get("rank_rngs") or [state["numpy_rng"]]
    rank = distributed.world().rank
    if rank < len(streams):
        rng.bit_generator.state = streams[rank]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state["seconds"])


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


def train_network(
    normals: Sequence[np.ndarray],
    config: SelfTaughtConfig,
    hyper: SelfTaughtHyperparameters,
    *,
    defects: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: Path | None = None,
    on_step: StepFn | None = None,
) -> tuple[torch.nn.Module, TrainingRecord]:
    """Train from the initial weights ``config.encoder`` names (or from
    ``checkpoint_dir``'s checkpoint) on images already at ``config.shape``; raises
    TrainingDivergedError on a NaN or infinite loss.

    Under torchrun each rank makes its share of every global batch from its own stream
    (``seed + rank``), and the ranks agree on the loss, progress and checkpoints each step.
    """
    if not normals:
        raise UserError("the self-taught round needs at least one normal image")
    world = distributed.world()
    torch.manual_seed(seed)
    rng = np.random.default_rng(world.seed(seed))
    checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT_FILE
    resuming = checkpoint is not None and checkpoint.is_file()
    network = build_network(config, pretrained=not resuming).to(device)
    optimiser = torch.optim.AdamW(
        network.parameter_groups(hyper.pretrained_lr_scale),
        lr=hyper.learning_rate,
        weight_decay=hyper.weight_decay,
    )
    step, spent = 0, 0.0
    if checkpoint is not None and resuming:
        step, spent = _resume(checkpoint, network, optimiser, config, rng)
    resumed_from = step
    # Wrapped after a resume: DDP hands rank 0's (resumed) weights to every rank.
    model = world.wrap(network, device)
    share = world.share(hyper.batch_size)
    sampler = CropSampler(normals, defects, replace(hyper, batch_size=share), rng)
    budget = hyper.budget_minutes * 60.0
    started = time.monotonic() - spent
    last_save = time.monotonic()
    loss_value = float("nan")
    network.train()
    progress = max(step / hyper.steps, spent / budget)
    while progress < 1.0:
        for group in optimiser.param_groups:
            # A checkpoint from before encoders were a choice has groups without a scale.
            scale = group.get("lr_scale", 1.0)
            group["lr"] = learning_rate(progress, hyper.learning_rate) * scale
        crops, targets = sampler.batch()
        inputs = standardise(crops, config).to(device)
        targets = targets.to(device)
        logits = model(inputs)
        loss = focal_loss(logits, targets, gamma=hyper.focal_gamma, alpha=hyper.focal_alpha)
        loss = loss + hyper.dice_weight * dice_loss(logits, targets)
        if world.enabled:
            loss = loss * world.weight(share, hyper.batch_size)
        loss_value = world.mean(float(loss.detach()))  # every rank sees a divergence at once
        if not math.isfinite(loss_value):
            raise TrainingDivergedError(
                f"the self-taught network diverged at step {step + 1} (loss {loss_value}); "
                "nothing was promoted. Lower the learning rate "
                f"(now {hyper.learning_rate:g}) and train again"
            )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        elapsed = time.monotonic() - started
        due = checkpoint is not None and time.monotonic() - last_save >= hyper.checkpoint_every_s
        progress, saving = world.agree(max(step / hyper.steps, elapsed / budget), float(due))
        if on_step is not None:
            on_step(step, hyper.steps, loss_value, min(progress, 1.0))
        if checkpoint is not None and saving:
            streams = world.gather(rng.bit_generator.state) if world.enabled else None
            if world.is_main:
                write_bytes_atomic(
                    checkpoint,
                    _checkpoint_state(
                        network,
                        optimiser,
                        config,
                        step=step,
                        seconds=elapsed,
                        rng=rng,
                        rank_rngs=streams,
                    ),
                )
            last_save = time.monotonic()
    network.eval()
    record = TrainingRecord(
        steps=step,
        seconds=round(time.monotonic() - started, 1),
        final_loss=loss_value,
        resumed_from_step=resumed_from,
    )
    return network, record
