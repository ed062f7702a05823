"""Helpers the test modules share (pytest puts tests/ on the import path): driving the app with
AppTest, running the CLI and checking that nothing was lost or touched."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from oga_core.cli import main

APP = Path(__file__).resolve().parent.parent / "app.py"
TIMEOUT = 120
PROGRESS = re.compile(r"^oga: \w+ \.\.\.$")  # the stage lines printed when stderr is not a terminal


# -- the app ---------------------------------------------------------------------------------
def open_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert_clean(at)
    return at


def open_page(page: str, **state: object) -> AppTest:
    at = open_app()
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{page}.py").run()
    assert_clean(at)
    # The page ran inside app.py's navigation: the sidebar's ranking controls are there.
    assert [w.key for w in at.sidebar.selectbox] == ["rank_detector"]
    return at


def assert_clean(at: AppTest) -> None:
    """No traceback and no error message on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def page_error(at: AppTest, *fragments: str) -> str:
    """The page shows exactly one error message holding every fragment, and no traceback."""
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def select_on_chart(
    at: AppTest, key: str, points: list[dict] = (), *, box: tuple | None = None, lasso: list | None = None
) -> AppTest:
    """Send a selection on the Plotly chart ``key`` as the browser does (the chart's widget state
    as Streamlit's frontend writes it: points, their indices, the box and lasso in data
    coordinates) and run. AppTest has no accessor for a chart's selection, hence its internals."""
    (chart,) = [c for c in at.get("plotly_chart") if c.key == key]
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    boxes = [] if box is None else [{"xref": "x", "yref": "y", "x": [box[0], box[1]], "y": [box[2], box[3]]}]
    lassos = (
        [] if lasso is None else [{"xref": "x", "yref": "y", "x": [p[0] for p in lasso], "y": [p[1] for p in lasso]}]
    )
    state.string_value = json.dumps(
        {
            "selection": {
                "points": list(points),
                "point_indices": [p.get("point_index", 0) for p in points],
                "box": boxes,
                "lasso": lassos,
            }
        }
    )
    return at._run(states)


def array(value) -> list:
    """A Plotly JSON array as a list (Plotly 6+ writes numeric arrays as base64 typed arrays)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return list(value)


# -- the CLI ---------------------------------------------------------------------------------
def cli_fails(capsys, argv: list[str], *fragments: str) -> str:
    """Run the CLI, expect exit status 2 and exactly one 'oga: error: ...' line; return it."""
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not PROGRESS.match(line)]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("oga: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# -- nothing lost, nothing touched -----------------------------------------------------------
def tree_hashes(*roots: Path) -> dict[str, str]:
    """``{path: content hash}`` of every file under ``roots`` (links by their target text), to
    show that bystander files did not change."""
    out = {}
    for root in roots:
        root = Path(root)
        paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_symlink():
                out[str(path)] = "link:" + str(path.readlink())
            elif path.is_file():
                out[str(path)] = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    return out


def decisions_intact(db: Path) -> list[tuple]:
    """``PRAGMA integrity_check`` is ok; returns the decisions (sorted rows) to compare."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return sorted(con.execute("SELECT sample_id, action, label, original_label FROM decisions").fetchall())
    finally:
        con.close()
