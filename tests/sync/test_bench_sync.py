"""``bench sync`` runs end to end through the CLI at a tiny size and reports its fields."""

from __future__ import annotations

import json
from pathlib import Path

from workstation.__main__ import main


def test_bench_sync_smoke(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    code = main(
        ["bench", "sync", "--images", "6", "--revisions", "30", "--size", "16", "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["images"] == 6 and report["revisions"] == 30 and report["masks"] == 12
    timed = ("export_s", "import_s", "reimport_s", "import_cpu_s", "bundle_mb")
    assert all(report[key] > 0 for key in timed)
