"""The one exception family of tabrl.

Every error a user can cause carries a message of one line: what was wrong and what to do instead.
The command line prints that line and exits with the error's ``exit_code``; nothing else escapes.
"""

from __future__ import annotations


class TabrlError(Exception):
    """A failure tabrl can explain in one line (exit code 1)."""

    exit_code = 1


class UsageError(TabrlError):
    """Bad input: an argument, an environment id, a hyperparameter (exit code 2)."""

    exit_code = 2


class RunFolderError(TabrlError):
    """A run folder or one of its files is missing, corrupted or belongs to something else."""


class NotCompilableError(UsageError):
    """The environment cannot run on the compiled engine; the message says why."""
