"""Few-shot expert on synthetic parts: finds the defect, and handles bad input clearly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from synthetic_parts import DEFECT_BOX, textured, with_defect

from workstation.core.errors import UserError
from workstation.experts.base import Backbone, Expert, available_backbones, build_backbone
from workstation.experts.coreset import greedy_coreset
from workstation.experts.fewshot import FewShotConfig, FewShotExpert
from workstation.experts.filterbank import FilterBankBackbone
from workstation.experts.patch_knn import nearest_distances, top_percent_mean

SIZE = 96


def expert(**options: object) -> FewShotExpert:
    config = FewShotConfig(image_size=SIZE, **options)  # type: ignore[arg-type]
    return FewShotExpert(build_backbone("filterbank"), config)


def normals(count: int = 5) -> list[np.ndarray]:
    return [textured(seed) for seed in range(count)]


def assert_finds_defect(model: FewShotExpert) -> None:
    defect, _ = with_defect(77)
    clean = [textured(seed) for seed in (50, 51, 52)]
    maps = model.predict([*clean, defect])
    assert maps[-1].score > max(m.score for m in maps[:-1])
    y, x = np.unravel_index(int(np.argmax(maps[-1].map)), maps[-1].map.shape)
    y0, x0, y1, x1 = DEFECT_BOX
    assert y0 - 4 <= y <= y1 + 4 and x0 - 4 <= x <= x1 + 4


def test_filterbank_matches_backbone_protocol() -> None:
    backbone = build_backbone("filterbank")
    assert isinstance(backbone, Backbone)
    feats = backbone.features([textured(0), textured(1)])
    assert feats.dtype == torch.float32
    assert feats.shape == (2, FilterBankBackbone().channels, SIZE // 8, SIZE // 8)
    assert "filterbank" in available_backbones()


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="backbone"):
        build_backbone("no-such-backbone")


@pytest.mark.parametrize(
    "options",
    [{}, {"position_aware": True}, {"augment": True}, {"memory_budget": 200}, {"knn": 3}],
    ids=["plain", "position", "augment", "coreset", "knn3"],
)
def test_finds_synthetic_defect(options: dict[str, object]) -> None:
    model = expert(**options)
    assert isinstance(model, Expert)
    model.fit(normals())
    assert_finds_defect(model)


def test_maps_come_back_at_each_input_size() -> None:
    model = expert()
    model.fit(normals())
    gray = textured(60)[:, :, 0]
    rgba = np.dstack([textured(61), np.full((SIZE, SIZE), 255, np.uint8)])
    deep = textured(62).astype(np.uint16) * 257
    wide = np.ascontiguousarray(np.concatenate([textured(63), textured(64)], axis=1))
    small = textured(65)[:40, :56]
    maps = model.predict([gray, rgba, deep, wide, small])
    assert [m.map.shape for m in maps] == [(96, 96), (96, 96), (96, 96), (96, 192), (40, 56)]
    assert all(np.isfinite(m.map).all() and np.isfinite(m.score) for m in maps)
    # 16-bit input scaled to 8 bits scores like its 8-bit original.
    same = model.predict([textured(62)])[0]
    assert maps[2].score == pytest.approx(same.score, rel=1e-3)


def test_mixed_size_normals_fit() -> None:
    model = expert()
    model.fit([textured(0), np.concatenate([textured(1), textured(2)], axis=0), textured(3)])
    assert model.shape is not None and model.shape[0] % 16 == 0


def test_zero_normals_is_a_user_error() -> None:
    with pytest.raises(UserError, match="at least one normal"):
        expert().fit([])


def test_predict_before_fit_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not been fitted"):
        expert().predict([textured(0)])


def test_image_smaller_than_a_patch_is_a_user_error() -> None:
    model = expert()
    model.fit(normals(2))
    with pytest.raises(UserError, match="smaller than one 8-pixel patch"):
        model.predict([np.zeros((5, 40, 3), np.uint8)])


def test_bad_array_shapes_are_user_errors() -> None:
    model = expert()
    with pytest.raises(UserError, match="gray, RGB or RGBA"):
        model.fit([np.zeros((32, 32, 2), np.uint8)])
    with pytest.raises(UserError, match="NaN"):
        model.fit([np.full((32, 32), np.nan, np.float32)])


def test_constant_images_give_finite_scores() -> None:
    model = expert()
    model.fit([np.full((SIZE, SIZE, 3), 128, np.uint8)] * 3)
    maps = model.predict([np.full((SIZE, SIZE, 3), 128, np.uint8), textured(0)])
    assert all(np.isfinite(m.map).all() for m in maps)
    assert maps[0].score == pytest.approx(0.0, abs=1e-3)
    assert maps[1].score > maps[0].score


class NanBackbone:
    name = "nan"
    patch_stride = 8

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.full((len(images), 4, 4, 4), float("nan"))


def test_nan_features_are_a_clear_error() -> None:
    model = FewShotExpert(NanBackbone(), FewShotConfig(image_size=32))
    with pytest.raises(UserError, match="NaN or infinite features"):
        model.fit([textured(0, 32)])


def test_leave_one_out_calibration_excludes_the_shot_itself() -> None:
    model = expert()
    model.fit(normals(4))
    loo = model.calibration_maps()
    assert len(loo) == 4
    # Scoring a shot against a bank that holds it would give ~0; held out it must not.
    assert min(m.score for m in loo) > 0.1
    assert model.calibration_maps() == []  # freed after use


def test_single_shot_calibrates_against_its_flips() -> None:
    model = expert()
    model.fit(normals(1))
    (only,) = model.calibration_maps()
    assert only.score > 0 and only.map.shape == (SIZE, SIZE)


def test_state_round_trip_gives_identical_maps() -> None:
    model = expert(memory_budget=300)
    model.fit(normals(3))
    clone = expert(memory_budget=300)
    clone.load_state(model.state())
    image = with_defect(5)[0]
    assert clone.predict([image])[0].score == pytest.approx(model.predict([image])[0].score)


def test_each_map_carries_an_embedding_of_what_the_image_looks_like() -> None:
    model = expert()
    model.fit(normals(3))
    rng = np.random.default_rng(0)
    flat = np.full((SIZE, SIZE, 3), 128, np.uint8) + rng.integers(0, 3, (SIZE, SIZE, 3), np.uint8)
    maps = model.predict([textured(60), textured(61), flat])
    channels = model.backbone.features([textured(0)]).shape[1]
    assert all(m.embedding is not None and m.embedding.shape == (2 * channels,) for m in maps)
    a, b, c = (m.embedding for m in maps)
    assert np.isfinite(a).all()
    # two parts of the same texture sit closer together than a part and a blank plate
    assert np.linalg.norm(a - b) < np.linalg.norm(a - c)


def test_nearest_distances_match_cdist() -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(50, 7, generator=generator)
    bank = torch.randn(300, 7, generator=generator)
    dist = torch.cdist(queries, bank)
    for knn in (1, 3):
        expected = dist.topk(knn, largest=False).values.mean(1)
        got = nearest_distances(queries, bank, knn=knn, query_chunk=16, bank_chunk=64)
        assert torch.allclose(got, expected, atol=1e-4)


def test_greedy_coreset_picks_the_outliers_first() -> None:
    points = torch.zeros(100, 3)
    points[:, 0] = torch.linspace(0, 1, 100)
    points[17] = torch.tensor([50.0, 0, 0])
    chosen = greedy_coreset(points, 3, projection_dim=128, seed=0)
    assert len(set(chosen.tolist())) == 3
    assert 17 in chosen.tolist()


def test_top_percent_mean() -> None:
    values = np.arange(200, dtype=np.float64)
    assert top_percent_mean(values, 1.0) == pytest.approx((199 + 198) / 2)
    assert top_percent_mean(values, 100.0) == pytest.approx(values.mean())


@pytest.mark.parametrize(
    "options", [{"top_percent": 0}, {"knn": 0}, {"image_size": 8}, {"feature_norm": "x"}]
)
def test_bad_config_is_a_user_error(options: dict[str, object]) -> None:
    with pytest.raises(UserError):
        FewShotConfig(**options)  # type: ignore[arg-type]


def test_bank_size_keeps_few_shots_whole_and_thins_many() -> None:
    config = FewShotConfig(memory_budget=20000, coreset_ratio=0.1, coreset_floor=8192)
    assert config.bank_size(5000) == 5000
    assert config.bank_size(65536) == 8192
    assert config.bank_size(819200) == 20000
    assert FewShotConfig(memory_budget=0).bank_size(10**6) == 100000


def test_working_shape_never_upsamples_beyond_the_images() -> None:
    from workstation.experts.features import working_shape

    assert working_shape([(96, 96)] * 3, image_size=512, multiple=8) == (96, 96)
    assert working_shape([(460, 1130)], image_size=512, multiple=8) == (328, 800)
    assert working_shape([(2000, 2000)], image_size=512, multiple=8) == (512, 512)


def test_blocked_coreset_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import workstation.experts.coreset as coreset

    points = torch.randn(500, 6, generator=torch.Generator().manual_seed(1))
    whole = greedy_coreset(points, 40, projection_dim=128, seed=0)
    monkeypatch.setattr(coreset, "CORESET_ROWS", 64)
    monkeypatch.setattr(coreset, "MOMENT_ROWS", 50)
    blocked = greedy_coreset(points, 40, projection_dim=128, seed=0)
    assert whole.tolist() == blocked.tolist()


def test_blocked_standardisation_matches_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import workstation.experts.patch_norm as patch_norm

    monkeypatch.setattr(patch_norm, "MOMENT_ROWS", 37)
    model = expert()
    raw = torch.randn(3, 10, 10, 5, generator=torch.Generator().manual_seed(2)) * 4 + 7
    model._set_standardisation(raw)
    flat = raw.reshape(-1, 5)
    assert model.mean is not None and model.scale is not None
    assert torch.allclose(model.mean, flat.mean(0), atol=1e-4)
    assert torch.allclose(model.scale, flat.std(0), atol=1e-4)
    normalised = model._normalise(raw.clone())
    assert torch.allclose(normalised.reshape(-1, 5).mean(0), torch.zeros(5), atol=1e-4)
