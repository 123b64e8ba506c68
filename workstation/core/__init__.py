"""Domain values and pure functions. Never imports Qt or torch (checked by tests/unit/test_architecture.py)."""
