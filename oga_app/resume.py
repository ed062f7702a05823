"""Where a new session starts: picking up where the person left off (docs/architecture.md,
"The app at scale").

A new session (a reload, a new tab, a bookmark or shared link, a restarted server) opens:

1. the workspace its URL names, ``?workspace=<data id>`` (the app writes it into the URL of every
   page that shows an analysis, so a bookmark or a link lands on the same data and page);
2. else the analysis running in this server now, most recently started first, with its live
   progress (a tab closed while training does not lose its work: the job belongs to the server);
3. else the most recent work: the settings last analysed in this app home, or the workspace
   analysed last if that is newer (an analysis that finished after its tab was closed);
4. else the digits demo: there is no work yet.

A link that names no workspace here, or names one in a way oga never would, is one line of
warning and the session falls back to 2-4; a workspace name is never read as a path. No
Streamlit here: ``oga_app.state`` reads the URL and shows the warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.workspace import Workspace

QUERY = "workspace"  # the URL's query parameter that names a workspace (its data id)
TIE_S = 1.0  # saved settings this close to a workspace's analysis are the same moment: the settings win


def choose(
    *,
    linked: str | None,
    running: Sequence[AnalysisConfig],
    saved: AnalysisConfig | None,
    saved_at: float | None,
    default: AnalysisConfig,
    home: Path | None = None,
) -> tuple[AnalysisConfig, str | None]:
    """The settings a new session opens, and a warning for a bad link (None when all is well).

    ``linked``: the URL's workspace name, if any. ``running``: the server's running analyses,
    newest first. ``saved`` / ``saved_at``: the settings last analysed in this app home and when
    they were saved (epoch s). ``default``: the demo.
    """
    warning = None
    if linked:
        try:
            return _settings(Workspace.lookup(linked, home).config), None
        except OgaError as exc:
            warning = f"The link's workspace could not be opened: {exc}. Opened the most recent work instead."
    if running:
        return running[0], warning
    latest = None
    for work in Workspace.recent(home, limit=3):  # the newest whose settings still make sense
        try:
            latest = (_settings(work.config), work.analysed_at)
            break
        except OgaError:
            continue
    if latest is not None and (saved is None or saved_at is None or latest[1] > saved_at + TIE_S):
        return latest[0], warning
    return saved or default, warning


def _settings(raw: dict) -> AnalysisConfig:
    try:
        return AnalysisConfig.from_dict(raw).validate()
    except (TypeError, ValueError) as exc:
        raise OgaError(f"its settings are unreadable ({exc})") from None
