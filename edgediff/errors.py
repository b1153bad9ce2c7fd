"""Typed errors. Each message says what went wrong and how to fix it; the CLI prints it as one `error:` line."""

from __future__ import annotations


class EdgediffError(Exception):
    """Base class. `exit_code` is what the CLI returns (2 = bad input, 1 = a check failed)."""

    exit_code = 2
    keep_output = False  # a failed check keeps the bundle's files under `<name>.failed/` for inspection


class RecipeError(EdgediffError):
    """The recipe or a CLI override is invalid."""


class ModelLoadError(EdgediffError):
    """A model folder or weights file cannot be loaded."""


class UnsupportedError(EdgediffError):
    """The request is well-formed but this backend or component cannot do it."""


class BackendUnavailable(EdgediffError):
    """A backend's SDK or platform is missing; the message says what to install or where it runs."""


class ImageInputError(EdgediffError):
    """An input image, mask or strength that the bundle cannot use (wrong size or mode, not an image, ...)."""


class DeviceError(EdgediffError):
    """A device (adb, ssh, app report) could not be reached or returned unusable output."""


class ParseError(EdgediffError):
    """A tool's output could not be parsed; never guess a number instead."""


class ParityError(EdgediffError):
    """One or more artifacts fell below the verification thresholds."""

    exit_code = 1

    def __init__(self, failures: list[str]):
        self.failures = list(failures)
        super().__init__("verification failed: " + "; ".join(self.failures))


class StageIncomplete(EdgediffError):
    """A slim stage stopped early (its time budget was spent) with its progress checkpointed: rerun to continue."""

    exit_code = 75  # EX_TEMPFAIL: try again


class QualityError(EdgediffError):
    """A slim stage's result fell below the quality threshold its recipe states (the message names the stage)."""

    exit_code = 1
