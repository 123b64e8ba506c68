"""One finding of a health check: what was found and, when something is wrong, the fix.

Shared by the installation checks (``workstation.doctor``) and the store checks
(``workstation.store.health``), so both print and count the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CheckSeverity = Literal["required", "optional"]
"""required: the application (or the store) is not usable until it is fixed; optional:
it only limits what can be done (a missing model, a fit to redo), never fails a run."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    severity: CheckSeverity = "required"

    @property
    def blocking(self) -> bool:
        """A failure the user must fix before the application can be used."""
        return not self.ok and self.severity == "required"
