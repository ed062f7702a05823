"""The one exception type the engine raises for input a person can fix.

The CLI prints an ``OgaError`` as a single line and exits non-zero; the app shows it as a message.
Anything else that escapes is a bug in oga, so it is allowed to surface as a traceback.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class OgaError(Exception):
    """Bad input or settings, described so that a person knows what to change.

    The message is always one line: control characters that came with the input (a newline in a
    label, a NUL in a path) are shown as escapes, so a refusal never spreads over several lines.
    """

    def __str__(self) -> str:
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], super().__str__())


class DataError(OgaError):
    """A data source that cannot be read: missing folder, corrupt image, bad label."""


class ModelError(OgaError):
    """An unknown model or a checkpoint that does not fit."""
