"""The desktop application: PySide6 and pyqtgraph are imported only under this package.

``app.py`` is the composition root (settings, store, lanes), ``launch.py`` starts the
window; everything below ``gui`` is Qt-free and never imports it.
"""
