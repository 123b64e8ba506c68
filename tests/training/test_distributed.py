"""Distributed rounds: 2 gloo processes on the CPU against 1, rank 0 alone writing, and
``--processes 1`` exactly the single-process round it always was.

Tolerances (2 processes against 1, same global batch and seed):
- adapter and VLM LoRA: both ranks draw the very batches of the single process and take
  every other example, so only the order of float sums differs, plus the dice term (a
  mean over the batch's defective images, split unevenly between ranks) and, for the
  VLM, LoRA dropout masks drawn per rank: metrics within ``CLOSE`` = 0.01;
- self-taught: each rank paints its own crops (seed + rank), so the networks differ as
  two seeds would and batch norm sees each rank's half batch: AUROCs within ``NEAR`` =
  0.05 on the tiny round, where the few-shot expert carries most of the map, and the
  counted rates (false alarms, recall) at most one image apart.
The gate decision must be the same in every case.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from feedback_store import PRODUCT, feedback_store

from training import distributed
from training.__main__ import run
from training.contract import ProgressEvent, RoundManifest, parse_event
from training.distributed import World
from training.kinds.selftaught import CHECKPOINT_DIR
from training.selftaught import CHECKPOINT_FILE
from training.selftaught_round import SYNTHETIC_PER_NORMAL
from workstation.core.errors import UserError
from workstation.services.rounds import (
    RoundHandle,
    RoundOptions,
    build_manifest,
    child_command,
    child_env,
    run_round,
)

CLOSE = 0.01
NEAR = 0.05
AUDITED = Path(__file__).with_name("audited_round.py")
TINY_SELFTAUGHT = {"steps": 6, "crop": 32, "width": 4, "batch_size": 4, "checkpoint_every_s": 0.0}


# ------------------------------------------------------------------------- one process


def test_one_process_never_touches_torch_distributed() -> None:
    world, device = distributed.init_from_env("cpu", env={})
    assert world == World() and device == "cpu" and world.is_main and not world.enabled
    assert not torch.distributed.is_initialized()
    assert world.mean(0.25) == 0.25 and world.total(3.0) == 3.0
    assert world.agree(0.5, 1.0) == (0.5, 1.0) and world.gather("x") == ["x"]
    module = torch.nn.Linear(2, 2)
    assert world.wrap(module, "cpu") is module
    assert World.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == World()


def test_more_processes_than_gpus_is_refused_alike_on_every_rank() -> None:
    too_many = str(torch.cuda.device_count() + 2)
    for rank in ("0", "1"):
        env = {"WORLD_SIZE": too_many, "RANK": rank, "LOCAL_RANK": rank,
               "LOCAL_WORLD_SIZE": too_many}  # fmt: skip
        with pytest.raises(UserError, match=r"only \d+ GPU\(s\); use --processes"):
            distributed.init_from_env("cuda", env=env)
    assert not torch.distributed.is_initialized() and distributed.world() == World()


def test_processes_1_runs_the_unchanged_child_command(tmp_path: Path) -> None:
    manifest, out = tmp_path / "m.json", tmp_path / "out"
    assert child_command(manifest, out, "cpu") == child_command(manifest, out, "cpu", 1) == [
        sys.executable, "-m", "training", "--manifest", str(manifest), "--out", str(out),
        "--device", "cpu",
    ]  # fmt: skip
    command = child_command(manifest, out, "cuda", 4)
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=4"]  # fmt: skip
    assert command[5:] == child_command(manifest, out, "cuda")[1:]
    with pytest.raises(UserError, match="processes must be at least 1"):
        RoundOptions(processes=0)


def test_a_global_batch_is_split_across_ranks() -> None:
    ranks = [World(rank=r, size=3) for r in range(3)]
    assert [w.share(8) for w in ranks] == [3, 3, 2]
    assert [list(w.shard(list(range(8)))) for w in ranks] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    assert sum(w.weight(w.share(8), 8) for w in ranks) / 3 == pytest.approx(1.0)
    assert [w.seed(10) for w in ranks] == [10, 11, 12]
    assert not ranks[1].is_main and ranks[0].is_main
    with pytest.raises(UserError, match="cannot be split across 3 processes"):
        ranks[0].share(2)
    assert World.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}) == World(1, 2, 1)


# ------------------------------------------------------------------- two gloo processes


def _torchrun(manifest: Path, out: Path, audit: Path) -> tuple[list[ProgressEvent], str]:
    """Run the round as ``--processes 2`` does, through the auditing wrapper."""
    command = child_command(manifest, out, "cpu", 2)
    command[command.index("-m", 2) : command.index("-m", 2) + 2] = [str(AUDITED)]
    env = child_env() | {"IAD_AUDIT_ROOT": str(out.parent), "IAD_AUDIT_LOG": str(audit)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [e for e in map(parse_event, done.stdout.splitlines()) if e is not None]
    return events, done.stderr


def _written(audit: Path, rank: int) -> list[str]:
    return json.loads((audit / f"rank{rank}.json").read_text())


def _assert_close(
    one: dict[str, object],
    two: dict[str, object],
    tolerance: float,
    one_image: dict[str, float] | None = None,
) -> None:
    """Same decision; each metric within ``tolerance``, or within one image's worth
    (``one_image[key]``, the rate's step) for a rate counted over a few images."""
    assert two["promote"] == one["promote"], (one["reason"], two["reason"])
    steps = one_image or {}
    for side in ("before", "after"):
        a, b = one[side], two[side]
        assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
        for key in a:
            allowed = max(tolerance, steps.get(key, 0.0) + 1e-9)
            assert b[key] == pytest.approx(a[key], abs=allowed), (side, key)


def _one_voice(events: list[ProgressEvent]) -> None:
    """Rank 0 alone reports: one start, one done, each step once and in order."""
    kinds = [e.event for e in events]
    assert kinds.count("done") == 1 and kinds[-1] == "done" and kinds[0] == "start"
    steps = [e.step for e in events if e.event == "step"]
    assert steps and steps == sorted(set(steps))


@pytest.mark.slow
def test_two_gloo_processes_train_the_adapter_of_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = feedback_store(tmp_path)
    options = RoundOptions(image_size=96, holdout_fraction=0.25, device="cpu",
                           hyperparameters={"steps": 20, "hidden": 8})  # fmt: skip
    manifest = build_manifest(store, store.get_product(PRODUCT), options, tmp_path / "r")
    path = manifest.save(tmp_path / "r" / "manifest.json")
    store.close()
    assert run(path, tmp_path / "one" / "out", "cpu") == 0
    assert not torch.distributed.is_initialized()
    one = json.loads((tmp_path / "one" / "out" / "metrics.json").read_text())
    last_one = [parse_event(line) for line in capsys.readouterr().out.splitlines()][-2]
    events, _ = _torchrun(path, tmp_path / "two" / "out", tmp_path / "audit")
    two = json.loads((tmp_path / "two" / "out" / "metrics.json").read_text())
    _one_voice(events)
    assert two["processes"] == 2 and "processes" not in one
    _assert_close(one, two, CLOSE)
    assert last_one is not None and last_one.step == events[-2].step == 20
    assert events[-2].loss == pytest.approx(last_one.loss, abs=CLOSE)  # reduced across ranks
    assert _written(tmp_path / "audit", 1) == []
    assert any("metrics.json" in w for w in _written(tmp_path / "audit", 0))


@pytest.mark.slow
def test_two_gloo_processes_train_the_vlm_lora_of_one(tmp_path: Path) -> None:
    from test_vlm_round import _samples

    from tests.tiny_vlm import tiny_vlm_folder

    samples = _samples(tmp_path)
    manifest = RoundManifest(
        product="plate",
        kind="vlm",
        backbone="filterbank",
        base_model=str(tiny_vlm_folder(tmp_path / "vlm")),
        train=tuple(samples[:2]),
        held_out=tuple(samples[2:]),
        hyperparameters={"steps": 3, "batch_size": 2},
        product_context={"description": "a plate", "normality_rules": ["flat"]},
    )
    path = manifest.save(tmp_path / "m.json")
    assert run(path, tmp_path / "one" / "out", "cpu") == 0
    one = json.loads((tmp_path / "one" / "out" / "metrics.json").read_text())
    events, _ = _torchrun(path, tmp_path / "two" / "out", tmp_path / "audit")
    two = json.loads((tmp_path / "two" / "out" / "metrics.json").read_text())
    _one_voice(events)
    _assert_close(one, two, CLOSE)
    assert (tmp_path / "two" / "out" / "adapter" / "adapter_config.json").is_file()
    assert _written(tmp_path / "audit", 1) == []


@pytest.mark.slow
def test_two_processes_through_the_service_judge_the_selftaught_network_alike(
    tmp_path: Path,
) -> None:
    outcomes = {}
    for processes in (1, 2):
        store = feedback_store(tmp_path / str(processes), normals=4, defects=2, references=4)
        options = RoundOptions(kind="selftaught", image_size=96, holdout_fraction=0.4,
                               hyperparameters=TINY_SELFTAUGHT, device="cpu",
                               processes=processes)  # fmt: skip
        events: list[ProgressEvent] = []
        outcome = run_round(store, PRODUCT, options, on_event=events.append)
        assert outcome.status == "succeeded", outcome.message
        assert outcome.version is not None
        metrics = json.loads((Path(outcome.version.path or "") / "metrics.json").read_text())
        outcomes[processes] = (outcome.version.state, metrics, events)
        manifest = RoundManifest.load(Path(outcome.round.manifest_path))
        store.close()
    (state_one, one, _), (state_two, two, events) = outcomes[1], outcomes[2]
    assert state_two == state_one
    _one_voice(events)
    assert two["training"]["steps"] == one["training"]["steps"] == 6
    normals = sum(s.label == "normal" for s in manifest.held_out)
    synthetic = SYNTHETIC_PER_NORMAL * normals
    _assert_close(one, two, NEAR, {"held_out_false_alarm_rate": 1 / normals,
                                   "held_out_synthetic_recall": 1 / synthetic})  # fmt: skip


def _ranks_of(launcher: int) -> list[int]:
    """Running processes whose parent is ``launcher`` (Linux /proc)."""
    ranks = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == launcher and stat[0] != "Z":
                ranks.append(int(entry.name))
    return ranks


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads Linux /proc")
def test_cancel_kills_every_rank_and_two_processes_resume_the_checkpoint(
    tmp_path: Path,
) -> None:
    store = feedback_store(tmp_path, normals=4, defects=0, references=4)
    handle = RoundHandle()
    endless = RoundOptions(kind="selftaught", image_size=96, holdout_fraction=0.4, device="cpu",
                           processes=2, hyperparameters={**TINY_SELFTAUGHT, "steps": 100000,
                                                         "budget_minutes": 10})  # fmt: skip
    seen: list[int] = []
    ranks: list[int] = []

    def cancel_after_checkpoints(event: ProgressEvent) -> None:
        if event.step is not None:
            seen.append(event.step)
            if event.step >= 3 and not ranks:
                ranks.extend(_ranks_of(handle._process.pid))  # type: ignore[union-attr]
                handle.cancel()

    killed = run_round(store, PRODUCT, endless, on_event=cancel_after_checkpoints, handle=handle)
    assert killed.status == "cancelled" and killed.version is None
    assert len(ranks) == 2
    deadline = time.monotonic() + 10
    while any(map(_running, ranks)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_running, ranks)), "a rank outlived the cancelled round"
    round_dir = Path(killed.round.manifest_path).parent
    state = torch.load(round_dir / CHECKPOINT_DIR / CHECKPOINT_FILE, weights_only=True)
    assert len(state["rank_rngs"]) == 2 and state["rank_rngs"][0] != state["rank_rngs"][1]
    manifest_path = round_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["hyperparameters"]["steps"] = max(seen) + 3
    manifest_path.write_text(json.dumps(manifest))
    resumed = run_round(
        store, PRODUCT, RoundOptions(kind="selftaught", device="cpu", processes=2), resume=True
    )
    assert resumed.status == "succeeded", resumed.message
    metrics = json.loads((Path(resumed.version.path or "") / "metrics.json").read_text())
    assert metrics["training"]["resumed_from_step"] >= 3 and metrics["processes"] == 2
    store.close()


def test_train_cli_takes_processes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--processes N`` reaches the round's options (the round itself is stubbed)."""
    from workstation.__main__ import main
    from workstation.services import rounds

    feedback_store(tmp_path).close()
    seen: list[RoundOptions] = []

    def fake_run_round(store: object, name: str, options: RoundOptions, **_: object) -> object:
        seen.append(options)
        raise UserError("stubbed")

    monkeypatch.setattr(rounds, "run_round", fake_run_round)
    db = str(tmp_path / "store" / "ws.sqlite")
    assert main(["train", "--product", PRODUCT, "--processes", "2", "--db", db]) == 2
    assert main(["train", "--product", PRODUCT, "--db", db]) == 2
    assert [o.processes for o in seen] == [2, 1]
