"""Errors that a user's own input causes (bad config, missing file, unknown backend).

The CLI turns a :class:`UserError` into one line on stderr and exit status 2.
"""


class UserError(ValueError):
    """A mistake in what the user asked for, with a message that says how to fix it."""


class ConfigError(UserError):
    """An experiment file or override with an unknown key or a bad value."""
