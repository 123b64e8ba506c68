"""Honest evaluation of the experts on MVTec-layout folders (``iad-workstation eval``)."""
