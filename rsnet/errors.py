"""The package's user errors: bad input, not bugs.

A command catches them and prints one ``error:`` line (exit code 2, ``rsnet.cli``); anything else
(a bug) keeps its traceback. It is a ValueError so that library callers may catch either.
"""


class UserError(ValueError):
    """Input the user can fix: a flag's value, a file, a folder, a checkpoint."""


class DataError(UserError):
    """A dataset or array file is missing, unreadable, unsafe or inconsistent."""


class DivergedError(UserError):
    """A training run whose loss stopped being finite: its config (the learning rate) is the fix."""
