"""Errors that are the user's to fix, kept apart from edgec's own bugs.

An :class:`EdgecError` carries a message that says what is wrong *and what to do*; the CLI prints
it without a traceback and exits with its ``exit_code``. Anything else that escapes is a bug in
edgec and is shown with a traceback.

Exit codes (the CLI contract): 0 success, 1 a run that failed (diverged, failed verification),
2 bad usage or bad input (recipe, data, files, missing optional dependency).

Example:
    >>> raise DataError("labels file is truncated: t10k-labels-idx1-ubyte.gz",
    ...                 hint="re-download the MNIST files or point --data at a complete copy")
"""

from __future__ import annotations


class EdgecError(Exception):
    """A problem the user can fix. ``hint`` says what to do about it."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.hint}" if self.hint else self.message


class RecipeError(EdgecError):
    """The recipe (YAML or Python config) is invalid."""


class DataError(EdgecError):
    """A dataset is missing, unreadable, malformed or too small."""


class ModelError(EdgecError):
    """A model name, model file or ONNX file is unknown, corrupt or does not fit."""


class ArtifactError(EdgecError):
    """An artifact on disk is missing, incomplete or does not match its manifest,
    or the output folder cannot be written."""


class MissingDependencyError(EdgecError):
    """An optional dependency is not installed; the hint names the extra that installs it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed",
            hint=f"install it with: pip install 'edgec[{extra}]'",
        )
        self.package = package
        self.extra = extra


class RunFailed(EdgecError):
    """The run itself failed (not the input): training diverged, verification failed."""

    exit_code = 1


class TrainingDiverged(RunFailed):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


class VerificationFailed(RunFailed):
    """A converted model disagrees with its source beyond the recipe's tolerance."""
