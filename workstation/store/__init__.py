"""The feedback store: the only package that speaks SQL (entry point: ``repository.Store``).

On disk a store is ``<name>.sqlite`` (WAL mode, so also ``-wal`` / ``-shm`` while open)
and ``<name>.blobs/ab/<sha256>.{mask,npy}`` next to it: content-addressed arrays (masks,
anomaly maps), and ``<name>.models/<version>/``: the store's fitted and trained model
versions. Images stay where they were imported from; rows keep path and sha256.

Modules: ``db`` (connection, transactions, migrations), ``schema`` (the migrations),
``blobs`` (array files), ``repository`` (``Store``: typed reads and writes, composed of
``base`` (connections, writes), ``products``, ``images`` (queue, priorities), ``revisions``
(masks, explanations, reviews), ``predictions``, ``registry`` (model versions, rounds) and
``maintenance`` (garbage, integrity)), ``rows`` (queue rows, batch inputs, row to record),
``current`` (which revision is the newest across stations), ``exchange`` (the SQL of sync
bundles), ``model_files`` (model version folders), ``health`` (read-only damage checks),
``salvage`` (repair into a new store), ``errors`` (SQLite errors in words). Dataset
layouts and export formats are files, not SQL: they live in ``workstation.datasets``.
"""
