"""Export: the cleaned data set as a manifest CSV (download or file) and as an image-folder copy
(written on the server, or packed as a .zip to download).

The manifest is built from the decisions in SQLite at the moment of the click, never on a page
run: a million-sample manifest takes seconds to make, so a run shows a preview of the rows it
draws and the download button makes its bytes when clicked (``oga_app.downloads``). Cells a
spreadsheet would run as formulas are neutralised by ``oga_core.export``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from oga_app import downloads, entry, resources, retraining
from oga_app.messages import guard
from oga_core.decisions import DecisionStore
from oga_core.export import (
    MANIFEST_COLUMNS,
    check_manifest_path,
    cleaned_manifest,
    default_export_dir,
    export_image_folder,
    export_slug,
    manifest_csv_bytes,
    safe_csv_frame,
    write_manifest,
)
from oga_core.pipeline import Analysis
from oga_core.store import oga_home
from oga_core.uploads import export_image_zip

SESSION = "session"
DROPPED = {"exclude": "Leave dropped samples out", "mark": "Keep them, marked action=drop"}
PREVIEW_ROWS = 2000
ZIP_KEY = "export_zip"  # (path, dropped setting, decisions' version) of the last .zip built
LOG_ROWS = 500  # the decision log's rows shown in the page (the download has all of them)


def manifest(analysis: Analysis, store: DecisionStore, dropped: str) -> pd.DataFrame:
    """The whole cleaned manifest as SQLite holds the decisions now (for a click, not a page run)."""
    return cleaned_manifest(analysis.dataset, store.table(), scores=analysis.scores, dropped=dropped)


def manifest_rows(analysis: Analysis, decisions: pd.DataFrame, rows: np.ndarray, dropped: str) -> pd.DataFrame:
    """The manifest of the samples at ``rows`` (data set order) alone: what a preview draws."""
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    if not len(rows):
        return pd.DataFrame(columns=list(MANIFEST_COLUMNS))
    subset = analysis.dataset.subset(rows)
    return cleaned_manifest(subset, decisions, scores=analysis.scores.iloc[rows], dropped=dropped)


def render(analysis: Analysis) -> None:
    store = resources.store_for(analysis)
    _, _, counts = resources.views(analysis).progress(store)  # decisions about samples in this data
    c = st.columns(4)
    c[0].metric("Kept", f"{counts['keep']:,}")
    c[1].metric("Dropped", f"{counts['drop']:,}")
    c[2].metric("Relabelled", f"{counts['relabel']:,}")
    c[3].metric("Undecided", f"{len(analysis.dataset) - sum(counts.values()):,}", help="Exported as they are.")
    dropped = st.radio(
        "Dropped samples",
        list(DROPPED),
        format_func=DROPPED.get,
        key="export_dropped",
        horizontal=True,
        persist_state=SESSION,
    )
    manifest_section(analysis, store, dropped, counts["drop"])
    folder_section(analysis, store, dropped)
    st.subheader("Did the cleaning help?")
    retraining.section(analysis, key="export")
    with st.expander("Decision log (append-only, for audits)"):
        st.dataframe(safe_csv_frame(store.events(last=LOG_ROWS)), width="stretch", hide_index=True)
        st.caption(f"The latest {LOG_ROWS} events; the download holds all of them.")
        st.download_button(
            "Download the decision log",
            lambda: downloads.cached(
                ("log", str(store.path), store.version()), lambda: manifest_csv_bytes(store.events())
            ),
            file_name=f"{export_slug(analysis.config.data, analysis.data_id)}-decision-log.csv",
            mime="text/csv",
            key="download-log",
            on_click="ignore",
        )


def manifest_section(analysis: Analysis, store: DecisionStore, dropped: str, n_dropped: int) -> None:
    """The cleaned manifest: a preview, a download, and a write to a file on the server."""
    st.subheader("Cleaned manifest")
    st.caption("Columns: sample_id, path, original_label, label, action, score. Undecided samples keep their label.")
    only_decided = st.toggle(
        "Preview decided samples only", value=True, key="export_only_decided", persist_state=SESSION
    )
    decisions = store.table()
    if only_decided:
        decided = resources.views(analysis).positions().get_indexer(decisions["sample_id"].astype(object))
        preview = manifest_rows(analysis, decisions, decided[decided >= 0], dropped)
    else:  # the manifest's first rows: as many samples again as were dropped cover those left out
        head = np.arange(min(len(analysis.dataset), PREVIEW_ROWS + 1 + (n_dropped if dropped == "exclude" else 0)))
        preview = manifest_rows(analysis, decisions, head, dropped)
    st.dataframe(safe_csv_frame(preview.head(PREVIEW_ROWS)), width="stretch", hide_index=True, height=260)
    total = len(analysis.dataset) - (n_dropped if dropped == "exclude" else 0)
    st.caption(
        f"{total:,} rows in the manifest"
        + (f" (preview shows the first {PREVIEW_ROWS:,})" if len(preview) > PREVIEW_ROWS else "")
    )
    slug = export_slug(analysis.config.data, analysis.data_id)
    # The download on its own row, then the path with its two controls: four in one row were cut off
    # at 1024 px beside the sidebar.
    st.download_button(
        "Download cleaned CSV",
        lambda: downloads.cached(
            ("manifest", analysis.data_id, id(analysis.scores), dropped, store.version()),
            lambda: manifest_csv_bytes(manifest(analysis, store, dropped)),
        ),
        file_name=f"{slug}-cleaned.csv",
        mime="text/csv",
        key="download-csv",
        type="primary",
        icon=":material/download:",
        on_click="ignore",
    )
    row = st.columns([3, 2], vertical_alignment="bottom")
    csv_path = row[0].text_input(
        "… or write it to",
        str(default_export_dir(analysis.config.data, analysis.data_id) / "cleaned.csv"),
        key="export_csv_path",
        persist_state=SESSION,
    )
    controls = row[1].container(horizontal=True, vertical_alignment="bottom")
    replace_csv = controls.checkbox(
        "Replace a file",
        key="export_csv_replace",
        help="Replace an existing file. Without this, a file that exists and is not a manifest oga wrote is never "
        "overwritten.",
    )
    if controls.button("Write CSV", key="write-csv", icon=":material/save:"):
        with guard():
            target = check_manifest_path(Path(csv_path), analysis.dataset, overwrite=replace_csv)
            table = manifest(analysis, store, dropped)
            written = write_manifest(table, target)
            st.success(f"Wrote {len(table):,} rows to {written}", icon=":material/check_circle:")


def _progress_bar(verb: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A progress bar for copying images: ``(update(done, total), remove())``."""
    bar = st.progress(0.0, text=f"{verb} images …")

    def update(done: int, total: int) -> None:
        if done == total or done % 200 == 0:  # a message to the browser per update: not per image
            bar.progress(done / total, text=f"{verb} images: {done:,} of {total:,}")

    return update, bar.empty


def folder_section(analysis: Analysis, store: DecisionStore, dropped: str) -> None:
    """The image-folder copy: written to a folder on the server, or built as a .zip to download."""
    slug = export_slug(analysis.config.data, analysis.data_id)
    st.subheader("Image-folder copy")
    st.caption(
        "Writes DEST/<label>/<file> for every sample not dropped (relabelled ones under their new label), "
        "plus DEST/manifest.csv: load it back with folder:DEST or csv:DEST/manifest.csv."
    )
    row = st.columns([3, 2], vertical_alignment="bottom")
    dest = row[0].text_input(
        "Destination folder",
        str(default_export_dir(analysis.config.data, analysis.data_id) / "images"),
        key="export_folder",
        persist_state=SESSION,
    )
    controls = row[1].container(horizontal=True, vertical_alignment="bottom")
    overwrite = controls.checkbox(
        "Overwrite",
        key="export_overwrite",
        help="Replace an earlier oga export in this folder: only the files that export wrote (listed in its "
        ".oga-export.json) are replaced; any other file stays, and a folder oga did not write is refused.",
    )
    if controls.button("Write image folder", key="write-folder", icon=":material/folder_copy:"):
        with guard():
            update, done = _progress_bar("Copying")
            per_class = export_image_folder(
                analysis.dataset, manifest(analysis, store, dropped), Path(dest), overwrite=overwrite, progress=update
            )
            done()
            st.success(
                f"Copied {sum(per_class.values()):,} images in {len(per_class)} classes to {Path(dest).expanduser().resolve()}",
                icon=":material/check_circle:",
            )

    row = st.container(horizontal=True, vertical_alignment="center")  # wraps when the page is narrow
    version = store.version()
    if row.button("Build the image folder as a .zip", key="zip-folder", icon=":material/folder_zip:"):
        with guard():
            update, done = _progress_bar("Packing")
            zip_path, _ = export_image_zip(
                analysis.dataset,
                manifest(analysis, store, dropped),
                oga_home() / "exports" / slug / f"{slug}-cleaned.zip",
                name=f"{slug}-cleaned",
                progress=update,
            )
            done()
            st.session_state[ZIP_KEY] = (str(zip_path), dropped, version)
    built, built_dropped, built_version = st.session_state.get(ZIP_KEY) or (None, None, None)
    if built and (built_dropped, built_version) != (dropped, version):
        row.caption("Decisions changed since the .zip was built: build it again.")
    elif built and Path(built).is_file() and Path(built).name.startswith(slug):
        with open(built, "rb") as archive:
            row.download_button(
                f"Download {Path(built).name} ({Path(built).stat().st_size / 2**20:.1f} MiB)",
                archive,
                file_name=Path(built).name,
                mime="application/zip",
                key="download-zip",
                on_click="ignore",
                icon=":material/download:",
                type="primary",
            )
    else:
        row.caption("For a server you cannot reach by file path: the same copy as one download.")


if __name__ == "__main__":  # run as a page (see oga_app.entry)
    render(entry.analysis())
