"""Errors the command line reports as one message, without a traceback."""

from __future__ import annotations


class RecdistillError(Exception):
    """Base class of every error recdistill raises on purpose."""


class ConfigError(RecdistillError):
    """A configuration value is missing, unknown or out of range."""


class DataError(RecdistillError):
    """An input file or table is malformed; the message names the file and line."""


class DownloadError(RecdistillError):
    """A dataset could not be obtained; the message says how to provide it by hand."""


class StorageError(RecdistillError):
    """A file could not be written (disk full, read-only or no permission); nothing was half-written."""


class DependencyError(RecdistillError):
    """An optional package is not installed; the message gives the pip command."""
