"""User-facing errors: the CLI prints their message on one line and exits with code 2."""


class InputError(ValueError):
    """Invalid user input (a size of 0, an impossible spin, an unknown element, ...)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different run."""
