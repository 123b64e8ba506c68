"""Errors that reach a person. Their message is the whole story: what went wrong and the fix.

Anything raised as a ``UserError`` is shown without a traceback by the CLI and the GUI.
"""


class UserError(Exception):
    """A problem the user can fix (bad input, missing model, wrong folder)."""


class MissingModelError(UserError):
    """A model's weights are not on this machine."""


class SchemaTooNewError(UserError):
    """The store was written by a newer version of the application."""


class CancelledError(Exception):
    """Long work stopped because the user asked; never an error to report."""
