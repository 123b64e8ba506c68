"""The self-taught network on an ImageNet encoder: it starts from the packaged weights,
keeps their BatchNorm statistics, reads the input as the weights expect, saves which
encoder it has so a load rebuilds it (without the weight package), and older folders and
checkpoints, written before encoders were a choice, still load as scratch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_parts import textured, write_category

from training.selftaught import (
    CHECKPOINT_FILE,
    SelfTaughtHyperparameters,
    train_network,
)
from training.selftaught_round import fit_selftaught
from workstation.core.errors import MissingModelError
from workstation.experts.imagenet_weights import efficientnet_lite
from workstation.experts.selftaught import (
    CONFIG_FILE,
    ImageNetUNet,
    LiteUNet,
    SelfTaughtConfig,
    SelfTaughtError,
    SelfTaughtExpert,
    build_network,
    standardise,
)

TINY = {"steps": 2, "crop": 32, "width": 4, "batch_size": 4, "checkpoint_every_s": 0.0}
ENCODER = "efficientnet-lite0"


def _config(encoder: str = ENCODER, shape: tuple[int, int] = (64, 96)) -> SelfTaughtConfig:
    return SelfTaughtConfig(
        shape=shape, mean=(127, 127, 127), std=(128, 128, 128), width=4, encoder=encoder  # type: ignore[arg-type]
    )


def _hyper(**changes: object) -> SelfTaughtHyperparameters:
    return SelfTaughtHyperparameters.from_dict({**TINY, **changes})


def test_the_encoder_starts_from_the_packaged_weights_and_the_decoder_from_random() -> None:
    network = build_network(_config(), pretrained=True)
    assert isinstance(network, ImageNetUNet)
    reference = efficientnet_lite()
    # Trunk stage 5 is timm's blocks[4] (stage 1 is the stem with blocks[0]).
    for key, value in reference.blocks[4].state_dict().items():
        assert torch.equal(network.trunk.stages[4].state_dict()[key], value), key
    assert torch.equal(network.trunk.stages[0][0].weight, reference.conv_stem.weight)
    random = build_network(_config(), pretrained=False)
    assert not torch.equal(random.trunk.stages[0][0].weight, reference.conv_stem.weight)
    assert len(network.trunk.stages) == 5  # stride 32 stages are not kept


def test_skips_at_strides_1_to_16_and_a_full_size_logit() -> None:
    network = build_network(_config(), pretrained=False).eval()
    x = torch.zeros(2, 3, 64, 96)
    skips = network.encode(x)
    assert [tuple(s.shape) for s in skips] == [
        (2, 4, 64, 96), (2, 16, 32, 48), (2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6)
    ]
    assert tuple(network(x).shape) == (2, 1, 64, 96)
    assert isinstance(build_network(_config("scratch")), LiteUNet)


def test_training_keeps_the_trunks_batchnorm_and_slows_its_learning_rate() -> None:
    network = build_network(_config(), pretrained=True)
    network.train()
    trunk_bn = network.trunk.stages[2][0].bn1
    decoder_bn = network.up[0][1]
    assert not trunk_bn.training and decoder_bn.training
    before_trunk = trunk_bn.running_mean.clone()
    before_decoder = decoder_bn.running_mean.clone()
    network(torch.randn(4, 3, 64, 96) * 3 + 1)
    assert torch.equal(trunk_bn.running_mean, before_trunk)  # ImageNet statistics kept
    assert not torch.equal(decoder_bn.running_mean, before_decoder)
    groups = network.parameter_groups(0.1)
    trunk = {id(p) for p in network.trunk.parameters()}
    assert [g["lr_scale"] for g in groups] == [1.0, 0.1]
    assert {id(p) for p in groups[1]["params"]} == trunk  # type: ignore[union-attr]
    assert not trunk & {id(p) for p in groups[0]["params"]}  # type: ignore[union-attr]
    assert sum(len(g["params"]) for g in groups) == len(list(network.parameters()))  # type: ignore[arg-type,misc]


def test_the_round_feeds_the_encoder_its_own_input_normalisation() -> None:
    """EfficientNet-Lite0 wants TF's (x - 127) / 128; scratch the product's statistics."""
    normals = [textured(seed) for seed in range(3)]
    expert, record = fit_selftaught(normals, image_size=96, hyper=_hyper(encoder=ENCODER), seed=0)
    assert record.steps == 2
    assert expert.config.encoder == ENCODER
    assert expert.config.mean == (127.0,) * 3 and expert.config.std == (128.0,) * 3
    pixels = np.full((16, 16, 3), (0, 127, 255), np.uint8)
    x = standardise([pixels], expert.config)[0, :, 0, 0]
    assert torch.allclose(x, torch.tensor([-127 / 128, 0.0, 1.0]))
    scratch, _ = fit_selftaught(normals, image_size=96, hyper=_hyper(), seed=0)
    assert scratch.config.encoder == "scratch"
    assert scratch.config.mean != (127.0,) * 3  # the textures' own mean


def test_a_saved_model_loads_its_encoder_without_the_weight_package(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    normals = [textured(seed) for seed in range(3)]
    expert, _ = fit_selftaught(normals, image_size=96, hyper=_hyper(encoder=ENCODER), seed=0)
    folder = expert.save(tmp_path / "model")
    assert json.loads((folder / CONFIG_FILE).read_text())["encoder"] == ENCODER
    request.getfixturevalue("not_installed")  # the station has timm but not the package
    loaded = SelfTaughtExpert.load(folder)
    assert isinstance(loaded.network, ImageNetUNet)
    probe = [textured(9)]
    assert np.allclose(expert.predict(probe)[0].map, loaded.predict(probe)[0].map, atol=1e-5)


def test_a_folder_from_before_encoders_were_a_choice_loads_as_scratch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = SelfTaughtConfig(shape=(64, 96), mean=(120,) * 3, std=(40,) * 3, width=4)
    folder = SelfTaughtExpert(LiteUNet(4), config).save(tmp_path / "old")
    raw = json.loads((folder / CONFIG_FILE).read_text())
    del raw["encoder"]  # what the previous version wrote
    (folder / CONFIG_FILE).write_text(json.dumps(raw))
    loaded = SelfTaughtExpert.load(folder)
    assert loaded.config.encoder == "scratch" and isinstance(loaded.network, LiteUNet)

    raw["encoder"] = "resnet-50"
    (folder / CONFIG_FILE).write_text(json.dumps(raw))
    with pytest.raises(SelfTaughtError, match=r"encoder 'resnet-50'.*train a new self-taught"):
        SelfTaughtExpert.load(folder)


def test_an_old_checkpoint_resumes_and_another_encoders_is_refused(tmp_path: Path) -> None:
    normals = [textured(seed) for seed in range(2)]
    scratch = _config("scratch", shape=(96, 96))
    train_network(normals, scratch, _hyper(steps=2), checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_FILE
    state = torch.load(path, weights_only=True)
    del state["config"]["encoder"]  # as the previous version wrote it
    for group in state["optimiser"]["param_groups"]:
        del group["lr_scale"]
    torch.save(state, path)
    _, record = train_network(normals, scratch, _hyper(steps=4), checkpoint_dir=tmp_path)
    assert record.resumed_from_step == 2 and record.steps == 4

    pretrained = _config(ENCODER, shape=(96, 96))
    with pytest.raises(SelfTaughtError, match=r"scratch encoder.*efficientnet-lite0 encoder"):
        train_network(normals, pretrained, _hyper(steps=6), checkpoint_dir=tmp_path)


def test_training_without_the_package_is_one_line_naming_pip(not_installed: str) -> None:
    normals = [textured(seed) for seed in range(2)]
    with pytest.raises(MissingModelError) as caught:
        fit_selftaught(normals, image_size=96, hyper=_hyper(encoder=not_installed), seed=0)
    assert "\n" not in str(caught.value)
    assert 'pip install "iad-workstation[imagenet]"' in str(caught.value)


def test_without_timm_even_loading_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(MissingModelError, match=r"timm.*iad-workstation\[imagenet\]"):
        build_network(_config())


@pytest.mark.parametrize(
    ("encoder", "message"),
    [
        ("resnet-50", "encoder must be one of scratch, efficientnet-lite0"),
        (ENCODER, "pip install"),
    ],
)
def test_eval_with_an_unusable_encoder_is_one_error_line(
    encoder: str,
    message: str,
    not_installed: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from workstation.__main__ import main

    dataset = write_category(tmp_path / "part", train=2, good=1, bad=1)
    code = main([
        "eval", str(dataset), "--expert", "selftaught", "--shots", "2",
        "--budget-minutes", "0.05", "--encoder", encoder,
    ])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert message in err


def test_eval_trains_the_chosen_encoder_for_the_given_steps(tmp_path: Path) -> None:
    from workstation.__main__ import main

    dataset = write_category(tmp_path / "part", train=3, good=1, bad=1)
    out = tmp_path / "report.json"
    code = main([
        "eval", str(dataset), "--expert", "selftaught", "--shots", "all", "--steps", "2",
        "--encoder", ENCODER, "--json", str(out),
    ])
    report = json.loads(out.read_text())
    assert code == 0
    assert report["config"]["encoder"] == ENCODER and report["config"]["steps"] == 2
    assert report["categories"]["part"]["train_steps"] == 2
