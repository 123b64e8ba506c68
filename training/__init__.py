"""Training rounds, run as a child process: ``python -m training --manifest M --out DIR``.

The app talks to this package only through :mod:`training.contract`.
"""
