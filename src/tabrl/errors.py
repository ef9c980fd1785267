"""The one exception family of tabrl.

Every error a user can cause carries a message of one line: what was wrong and what to do instead.
The command line prints that line and exits with the error's ``exit_code``; nothing else escapes.
"""

from __future__ import annotations

import difflib


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


def did_you_mean(word: str, choices: list[str]) -> str:
    """``"did you mean q-learning?"`` for a misspelt name, else the list of what is known."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]}?"
    return f"use one of {', '.join(choices)}"
