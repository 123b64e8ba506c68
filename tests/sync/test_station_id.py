"""Each store is a station with a uuid made on first open, kept, and shown by ``doctor``."""

from __future__ import annotations

import uuid
from pathlib import Path

from workstation import doctor
from workstation.config import Settings
from workstation.store.repository import Store


def test_station_id_is_made_once_kept_and_shown_by_doctor(tmp_path: Path) -> None:
    path = tmp_path / "line-1.sqlite"
    with Store.open(path) as store:
        station = store.station_id
    uuid.UUID(station)
    with Store.open(path) as again:
        assert again.station_id == station
    with Store.open(tmp_path / "line-2.sqlite") as other:
        assert other.station_id != station
    found = doctor.check_store(doctor.DoctorContext(settings=Settings(), db_path=path))
    assert found.ok and f"station {station}" in found.detail
