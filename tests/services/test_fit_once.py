"""Two inspections of one product at once fit its experts once, not twice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from synthetic_parts import write_category

import workstation.store.registry as registry
from workstation.config import user_config_path
from workstation.core.errors import CancelledError
from workstation.services.importing import import_directory
from workstation.store.repository import Store

ROOT = Path(__file__).resolve().parents[2]
RACER = """
import pathlib, sys, time
import workstation.experts.pipeline as pipeline
from workstation.__main__ import main

real_fit = pipeline.InspectionPipeline.fit

def slow_fit(self, *args, **kwargs):
    time.sleep(1.0)  # the other process surely arrives while this one fits
    return real_fit(self, *args, **kwargs)

pipeline.InspectionPipeline.fit = slow_fit
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
ready.write_text("")
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[3:]))
"""


def test_two_concurrent_inspections_fit_once(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    with Store.open(db) as store:
        import_directory(store, write_category(tmp_path / "widget", train=4, good=1, bad=1))
    user_config_path().parent.mkdir(parents=True, exist_ok=True)
    user_config_path().write_text("[experts]\nimage_size = 96\n")
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    go = tmp_path / "go"
    racers = []
    for index in range(2):
        ready = tmp_path / f"ready-{index}"
        argv = [str(ready), str(go), "--db", str(db), "inspect", "--product", "widget"]
        racers.append(
            (
                ready,
                subprocess.Popen(
                    [sys.executable, "-c", RACER, *argv],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in racers):
        assert time.monotonic() < deadline, "the racers did not start"
        assert all(p.poll() is None for _, p in racers), [p.communicate() for _, p in racers]
        time.sleep(0.01)
    go.write_text("")  # both start inspecting now
    outputs = [process.communicate(timeout=180) for _, process in racers]
    assert [p.returncode for _, p in racers] == [0, 0], outputs
    assert all("scored with experts-1" in out for out, _ in outputs), outputs
    with Store.open(db) as store:
        product = store.get_product("widget")
        assert [v.name for v in store.list_model_versions(product.id)] == ["experts-1"]
        assert not list(store.models_dir.glob(".tmp-*"))  # no half-written fit left


def test_a_fit_lock_of_a_dead_process_is_taken_over_and_waiting_can_be_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path / "s.sqlite")
    product = store.create_product("widget")
    cancelled = threading.Event()
    cancelled.set()  # a wait would raise at once: taking the lock must not wait
    with (
        store.fit_lock(product.id, "experts"),
        pytest.raises(CancelledError),  # a live holder (this process) is waited for
        store.fit_lock(product.id, "experts", cancel=cancelled),
    ):
        pass
    # A fitter that crashed left its row behind; its process is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with monkeypatch.context() as patch:
        patch.setattr(registry.os, "getpid", lambda: dead.pid)
        assert store._take_fit_lock(product.id, "experts", "crashed", socket.gethostname())
    with store.fit_lock(product.id, "experts", cancel=cancelled):
        pass  # taken over without waiting
    store.close()
