"""Errors of reading inputs and writing outputs: their messages are meant for the user, one line each."""


class InputError(ValueError):
    """The input cannot be used: missing, unreadable, empty, or frames that cannot be processed."""


class OutputError(OSError):
    """The output folder or one of its files cannot be written."""
