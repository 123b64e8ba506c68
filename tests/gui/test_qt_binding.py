"""The Qt binding must not leak references to None.

PySide6 6.12.0 on Python 3.11 drops a reference to ``None`` on every call of a Qt method
that returns nothing; a review session makes millions of them and Python aborts with
"deallocating None". pyproject caps the version; this test catches a binding that regresses.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtWidgets import QLabel


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from 3.12 on")
def test_void_qt_calls_keep_none_refcount_stable(qapp: object) -> None:
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
        label.update()
    drift = sys.getrefcount(None) - before
    assert abs(drift) < 100, f"None refcount drifted by {drift} over 4000 void Qt calls"
