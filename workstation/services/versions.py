"""Moving trained versions in and out of use: promote one, roll the active one back.

One implementation for the CLI (``models promote`` / ``models rollback``) and the GUI's
models panel, so that "roll back" means the same everywhere: the active version of a kind
is retired and its parent, if any, becomes active again.
"""

from __future__ import annotations

from workstation.core.errors import UserError
from workstation.core.types import ModelVersion
from workstation.store.repository import Store


def promote(store: Store, version_name: str) -> ModelVersion:
    """Make a version active; the previously active one of its kind is retired."""
    version = store.get_model_version(version_name)
    if version.state == "active":
        raise UserError(f"{version.name} is already the active {version.kind} version")
    return store.set_model_state(version.id, "active")


def rollback(store: Store, product_name: str, kind: str) -> ModelVersion | None:
    """Retire the active version of ``kind`` (state rolled_back) and reactivate its parent,
    if any. Rolling back always means the active version: the CLI names the kind, the GUI
    the version (:func:`rollback_version`), and both end here.

    Returns the version active afterwards (None: the product runs without a trained one).
    """
    product = store.get_product(product_name)
    active = store.active_model_version(product.id, kind)
    if active is None:
        raise UserError(f"{product.name!r} has no active {kind} version to roll back")
    store.set_model_state(active.id, "rolled_back")
    if active.parent_id is None:
        return None
    return store.set_model_state(active.parent_id, "active")


def rollback_version(store: Store, version_name: str) -> ModelVersion | None:
    """:func:`rollback` of the version's kind, refused unless that version is the active
    one (rolling back a candidate would reactivate its parent over the active version)."""
    version = store.get_model_version(version_name)
    if version.state != "active":
        raise UserError(
            f"{version.name} is not the active {version.kind} version ({version.state}); "
            "only the active version can be rolled back"
        )
    product = store.get_product(version.product_id)
    return rollback(store, product.name, version.kind)
