"""Many stations, one plant: feedback bundles between stations (``iad-workstation sync``)
and trained model versions published as bundles (``models publish`` / ``models install``).

The bundle files live here; the rows they carry are read and merged by
``workstation.store.exchange`` (SQL stays in the store).
"""
