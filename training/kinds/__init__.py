"""One module per trained model kind, registered in :mod:`workstation.core.kinds`.

Each module is torch-free at import (the CLI and the GUI read its hyperparameters and
feedback check) and defines ``Hyperparameters``, ``learns_from_all_normals``,
``check_feedback``, ``manifest_extras`` and ``settings_defaults``; see that registry's
docstring.
"""
