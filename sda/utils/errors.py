"""The one exception type that entry points turn into a clean one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the thing and the fix."""
