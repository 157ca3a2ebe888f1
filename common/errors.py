"""The one exception type that reaches the user as a single line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user (a flag, a file, a folder): reported as ``error: <message>``, exit 2."""
