"""Errors raised by the core for bad input; the Processing layer turns them into
QgsProcessingException with the same message."""


class InputError(ValueError):
    """The user's input cannot be used; the message names the input and how to fix it."""


class Cancelled(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """The user cancelled (core.run.Run.check_cancelled); nothing is returned or written."""
