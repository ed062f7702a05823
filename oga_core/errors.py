"""The one exception type the engine raises for input a person can fix.

The CLI prints an ``OgaError`` as a single line and exits non-zero; the app shows it as a message.
Anything else that escapes is a bug in oga, so it is allowed to surface as a traceback.
"""

from __future__ import annotations


class OgaError(Exception):
    """Bad input or settings, described so that a person knows what to change."""


class DataError(OgaError):
    """A data source that cannot be read: missing folder, corrupt image, bad label."""


class ModelError(OgaError):
    """An unknown model or a checkpoint that does not fit."""
