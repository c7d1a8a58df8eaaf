"""Typed errors. The library raises these; the CLI prints one line and exits with the error's code.

Exit codes (documented in README.md, "Exit codes"):
  0  everything ran and the gate passed
  1  the gate failed: an accuracy or performance regression
  2  usage or input error (bad flag, config, model, data, path): fix the input and run again
  3  environment error: a backend, GPU or package this run needs is not available here
  4  internal error: a bug in trtci (printed with a traceback)
  5  publishing failed (GitHub API): results and report are still written
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 4
EXIT_PUBLISH = 5


class TrtciError(Exception):
    """Base class of every error trtci expects and explains. Its message says what to fix."""

    exit_code = EXIT_INPUT


class ConfigError(TrtciError):
    """The config file or a command-line flag is wrong."""


class ModelError(TrtciError):
    """An ONNX model is missing, corrupt, or cannot be prepared."""


class DataError(TrtciError):
    """Calibration or validation data does not fit the model."""


class StoreError(TrtciError):
    """The results database cannot be opened or written."""


class TemplateError(TrtciError):
    """A report template is missing or fails to render."""


class BackendError(TrtciError):
    """A backend failed on a model (an op it cannot run, a parser error, a failed build)."""


class BackendUnavailable(TrtciError):
    """A backend cannot run on this machine (package missing, no GPU). The message says how to get it."""

    exit_code = EXIT_ENVIRONMENT


class PublishError(TrtciError):
    """Posting to GitHub failed. Results already written are kept."""

    exit_code = EXIT_PUBLISH
