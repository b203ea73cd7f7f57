"""User-facing errors: the CLI prints their message on one line and exits with a code.

Exit codes of ``nqs``: 0 success; 2 bad input (:class:`InputError`, :class:`CheckpointError`,
argparse); 3 environment (:class:`EnvironmentProblem`, and OS errors such as a full disk or a
permission denied while writing); 4 a run that diverged (:class:`RunDiverged`); 128 + N a run
stopped by signal N after a checkpoint (130 SIGINT, 143 SIGTERM).
"""


class InputError(ValueError):
    """Invalid user input (a size of 0, an impossible spin, an unknown element, ...)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different run."""


class EnvironmentProblem(RuntimeError):
    """The machine cannot run this (not enough memory, no cluster to join, a full disk)."""


class RunDiverged(RuntimeError):
    """The optimization could not recover from rejected steps, or ended with no finite energy."""
