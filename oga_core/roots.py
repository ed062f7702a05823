"""``OGA_ROOTS``: an optional allow-list that confines every path oga reads or writes for a person.

The app's path fields read and write files of the machine that runs the server. A team that
serves oga beyond localhost sets ``OGA_ROOTS`` to the folders it may touch (``os.pathsep``-
separated, e.g. ``/data:/exports``); every data source, checkpoint, manifest and export folder must
then resolve (symbolic links followed) inside one of them, or inside oga's own ``$OGA_HOME``, and
anything else is refused with one line. Unset, oga goes wherever the person points it, as a
command-line tool does (docs/architecture.md, "Safety").
"""

from __future__ import annotations

import os
from pathlib import Path

from oga_core.errors import OgaError

ENV = "OGA_ROOTS"


def allowed_roots() -> list[Path] | None:
    """The resolved folders of ``$OGA_ROOTS``, or None when it is unset or empty."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    return [Path(part).expanduser().resolve() for part in raw.split(os.pathsep) if part.strip()]


def check_allowed(path: Path | str, what: str) -> Path:
    """``path`` resolved; OgaError when ``$OGA_ROOTS`` is set and it lies outside every root
    (oga's own home always counts as allowed)."""
    from oga_core.store import oga_home  # store imports numpy; this module stays light

    resolved = Path(path).expanduser().resolve()
    roots = allowed_roots()
    if roots is None:
        return resolved
    for root in [*roots, oga_home().resolve()]:
        if resolved == root or root in resolved.parents:
            return resolved
    listed = os.pathsep.join(str(r) for r in roots)
    raise OgaError(f"{what} {resolved} is outside the folders this server may use ({ENV}={listed})")
