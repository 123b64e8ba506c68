"""The simulated review loop: exact leave-one-out bank, honest splits, adapter in the loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.kinds.adapter import AdapterHyperparameters
from workstation.__main__ import main
from workstation.bench.review_loop import (
    GrowingBank,
    prepare,
    score_round,
    seed_state,
    simulate,
    split_for_seed,
    train_adapter,
)
from workstation.demo.generator import DemoSpec, generate

HYPER = AdapterHyperparameters(steps=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    spec = DemoSpec(size=64, train_good=10, test_good=6, per_defect=2)
    root = generate(tmp_path_factory.mktemp("loop"), spec).root
    return prepare(root, image_size=64, hyper=HYPER)


def test_bank_distances_are_leave_one_out_nearest_neighbours() -> None:
    rng = np.random.default_rng(0)
    patches = torch.from_numpy(rng.normal(size=(5, 3, 4, 6)).astype(np.float32))
    bank = GrowingBank(patches)
    bank.add([0, 1])
    bank.add([3])
    rows = patches.reshape(5, 12, 6)
    for image in range(5):
        members = [m for m in (0, 1, 3) if m != image]
        pool = rows[members].reshape(-1, 6)
        expected = torch.cdist(rows[image], pool).min(1).values
        got = torch.from_numpy(bank.grids([image]).reshape(-1))
        assert torch.allclose(got, expected, atol=1e-4), image
    copy = bank.copy()
    copy.add([2])
    assert bank.members == [0, 1, 3] and copy.members == [0, 1, 3, 2]


def test_split_holds_out_half_of_each_test_label(prepared) -> None:  # type: ignore[no-untyped-def]
    split = split_for_seed(prepared, shots=3, seed=1)
    assert all(prepared.in_train[i] for i in split.shots) and len(split.shots) == 3
    labels = np.asarray(prepared.labels)
    for label in set(labels[~prepared.in_train]):
        total = int((labels[~prepared.in_train] == label).sum())
        assert int((labels[split.evaluation] == label).sum()) == total // 2
    together = split.shots + split.pool + split.evaluation
    assert sorted(together) == list(range(len(prepared)))
    assert split_for_seed(prepared, shots=3, seed=1) == split
    assert split_for_seed(prepared, shots=3, seed=2) != split


def test_adapter_joins_the_experts_once_a_defect_was_reviewed(prepared) -> None:  # type: ignore[no-untyped-def]
    split = split_for_seed(prepared, shots=3, seed=0)
    state = seed_state(prepared, split)
    before = score_round(prepared, state.expert, state.bank, None, split.evaluation)
    assert set(before.expert_scores) == {"fewshot"}
    defect = next(i for i in split.pool if prepared.anomalous[i])
    assert train_adapter(prepared, state.bank.members, [], hyper=HYPER, seed=0) is None
    adapter = train_adapter(prepared, state.bank.members, [defect], hyper=HYPER, seed=0)
    after = score_round(prepared, state.expert, state.bank, adapter, split.evaluation)
    assert set(after.expert_scores) == {"fewshot", "adapter"}
    assert not np.allclose(after.scores, before.scores)
    assert len(after.eval_maps) == len(split.evaluation)
    assert after.eval_maps[0].shape == prepared.fewshot_shape


def test_run_reviews_the_budget_and_recall_only_grows(prepared) -> None:  # type: ignore[no-untyped-def]
    state = seed_state(prepared, split_for_seed(prepared, shots=3, seed=0))
    run = simulate(prepared, state, "random", budget=3, rounds=3, hyper=HYPER, seed=0)
    assert run.reviews == [0, 3, 6, 9]
    assert [len(p) for p in run.picked] == [3, 3, 3]
    assert len({i for p in run.picked for i in p}) == 9
    assert np.all(np.diff(run.recall) >= 0) and run.recall[0] == 0.0
    defects = sum(prepared.anomalous[i] for p in run.picked for i in p)
    pool_defects = prepared.anomalous[state.split.pool].sum()
    assert run.recall[-1] == pytest.approx(defects / pool_defects)
    assert all(0 <= v <= 1 for v in run.image_auroc + run.pixel_auroc)
    assert 0 <= run.area("recall") <= run.recall[-1]


def test_wrong_folder_and_bad_sizes_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "active", str(tmp_path)]) == 2
    assert "not an MVTec-layout category" in capsys.readouterr().err
    assert main(["bench", "active", str(tmp_path), "--budget", "0"]) == 2
    assert "--budget" in capsys.readouterr().err
