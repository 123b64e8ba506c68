"""Every on-disk dataset layout the workstation reads or writes, with no SQL and no Qt.

Import, export, ``eval`` and the benchmarks read a folder through these modules, so a
layout is recognised the same way wherever it is opened.
"""
