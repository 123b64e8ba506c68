"""Domain values and pure functions.

Never imports Qt, nor torch at module level (checked by tests/unit/test_architecture.py).
"""
