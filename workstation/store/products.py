"""Products: the named kinds of part a store inspects, with their rules and threshold."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from workstation.core.errors import UserError
from workstation.core.types import Product
from workstation.store.base import StoreBase, timestamp
from workstation.store.rows import from_row

_UNSET: Any = object()


def _product(row: Mapping[str, Any]) -> Product:
    return from_row(
        Product,
        row,
        normality_rules=tuple(json.loads(row["normality_rules"])),
        defect_vocabulary=tuple(json.loads(row["defect_vocabulary"])),
    )


class ProductsMixin(StoreBase):
    """Create, find, list and change products."""

    def create_product(
        self,
        name: str,
        *,
        description: str = "",
        normality_rules: Sequence[str] = (),
        defect_vocabulary: Sequence[str] = (),
    ) -> Product:
        name = name.strip()
        if not name:
            raise UserError("a product needs a name")
        if self.find_product(name) is not None:
            raise UserError(f"a product named {name!r} already exists")
        with self._write() as w:
            cursor = w.conn.execute(
                "INSERT INTO products (name, description, normality_rules, defect_vocabulary, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (
                    name,
                    description,
                    json.dumps(list(normality_rules)),
                    json.dumps(list(defect_vocabulary)),
                    timestamp(),
                ),
            )
            product_id = cursor.lastrowid
        return self.get_product(int(product_id))

    def find_product(self, name: str) -> Product | None:
        row = self._one("SELECT * FROM products WHERE name = ?", (name,))
        return _product(row) if row else None

    def get_product(self, name_or_id: str | int) -> Product:
        if isinstance(name_or_id, int):
            row = self._one("SELECT * FROM products WHERE id = ?", (name_or_id,))
        else:
            row = self._one("SELECT * FROM products WHERE name = ?", (name_or_id,))
        if row is None:
            names = [p.name for p in self.list_products()]
            known = ", ".join(names) if names else "none yet; import a folder first"
            raise UserError(f"no product {name_or_id!r} in {self._path} (products: {known})")
        return _product(row)

    def list_products(self) -> list[Product]:
        return [_product(r) for r in self._query("SELECT * FROM products ORDER BY name")]

    def update_product(
        self,
        product_id: int,
        *,
        description: str = _UNSET,
        normality_rules: Sequence[str] = _UNSET,
        defect_vocabulary: Sequence[str] = _UNSET,
        threshold: float | None = _UNSET,
    ) -> Product:
        changes: dict[str, Any] = {}
        if description is not _UNSET:
            changes["description"] = description
        if normality_rules is not _UNSET:
            changes["normality_rules"] = json.dumps(list(normality_rules))
        if defect_vocabulary is not _UNSET:
            changes["defect_vocabulary"] = json.dumps(list(defect_vocabulary))
        if threshold is not _UNSET:
            changes["threshold"] = None if threshold is None else float(threshold)
        self.get_product(product_id)
        if changes:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            with self._write() as w:
                w.conn.execute(
                    f"UPDATE products SET {assignments} WHERE id = ?",
                    [*changes.values(), product_id],
                )
        return self.get_product(product_id)
