"""Errors a user can act on.

Every failure that bad input can cause is raised as a subclass of `LfpError` with a message
that says what was wrong and what to do, so the CLI can print it without a traceback and the
app can show it in place of a page.
"""


class LfpError(Exception):
    """Base class: an error whose message is meant for the user, not a developer."""


class ConfigError(LfpError):
    """A setting, preset or override that is unknown, mistyped or out of range."""


class HubUnreachableError(LfpError):
    """The Hugging Face Hub cannot be reached and the object is not cached locally."""


class UnknownModelError(LfpError):
    """A model or dataset id that names nothing on the hub or on disk."""


class RunFolderError(LfpError):
    """A run folder that is corrupted, locked by another process, or from another preset."""


class StoreBusyError(RunFolderError):
    """A run's store stayed in use by another connection for longer than the caller would wait."""


class StageOrderError(LfpError):
    """A stage was asked for before the stages it reads from have finished."""


class InputError(LfpError):
    """Data handed to an engine function that it cannot work with (empty, NaN, out of range)."""
