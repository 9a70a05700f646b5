"""Every error the studio and the probes pipeline report to a person: one base class, a few kinds.

An error's message is one line saying what is wrong and what to do. Entry points catch ``StudioError`` alone: the
command line prints ``error: <message>`` and exits with ``exit_code``; the page shows ``page_message``. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error meant for the user."""

    exit_code = 2  # command-line usage errors exit with 2, as argparse does

    @property
    def page_message(self) -> str:
        return str(self)


class InputError(StudioError, ValueError):
    """Bad input: a recipe field, a command-line argument, a widget value, a clip length.

    ``field`` names the input (``controls[0].gate_p``) and ``problem`` says what is wrong with it; the message is
    ``"<field> <problem>"``. ``within(path)`` re-raises a nested value's error under its place in a larger document.
    """

    def __init__(self, message: str, field: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.field, self.problem = field, problem

    @classmethod
    def at(cls, field: str, problem: str) -> "InputError":
        return cls(f"{field} {problem}" if field else problem, field, problem)

    def within(self, path: str) -> "InputError":
        if self.field is None:
            return InputError(f"{path}: {self}", path, str(self))
        return InputError.at(f"{path}.{self.field}" if path else self.field, self.problem)


class ModelLoadError(StudioError):
    """A model could not be loaded."""


class BankError(StudioError):
    """A concept bank cannot be built, saved, loaded or used as asked."""


class RFMError(StudioError):
    """An RFM probe cannot be fitted or used as asked."""


class SynTheoryError(StudioError):
    """A SynTheory concept, option, renderer or dataset problem."""


class EvaluationError(StudioError):
    """An evaluation cannot run as asked (bad input, missing files, inconsistent sets)."""


class Cancelled(StudioError):
    """A generation was cancelled through its ``cancel`` event; nothing was produced."""

    exit_code = 130  # as a shell reports a run stopped by Ctrl-C
