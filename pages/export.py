"""Export: the cleaned data set as a manifest CSV (download or file) and as an image-folder copy.

The manifest is built from the decisions in SQLite at the moment of the click; cells a
spreadsheet would run as formulas are neutralised by ``oga_core.export``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from oga_app import ui
from oga_core.export import (
    check_manifest_path,
    cleaned_manifest,
    default_export_dir,
    export_image_folder,
    export_slug,
    manifest_csv_bytes,
    safe_csv_frame,
    write_manifest,
)
from oga_core.store import oga_home
from oga_core.uploads import export_image_zip

SESSION = "session"
DROPPED = {"exclude": "Leave dropped samples out", "mark": "Keep them, marked action=drop"}


ui.require_entry()
st.title("Export")
with ui.guard(setup_link=True):
    analysis = ui.current_analysis()
    store = ui.store_for(analysis)
    decisions = store.table()
    counts = store.counts()
    slug = export_slug(analysis.config.data, analysis.data_id)

    c = st.columns(4)
    c[0].metric("Kept", counts["keep"])
    c[1].metric("Dropped", counts["drop"])
    c[2].metric("Relabelled", counts["relabel"])
    c[3].metric("Undecided", f"{len(analysis.dataset) - sum(counts.values()):,}", help="Exported as they are.")

    dropped = st.radio(
        "Dropped samples",
        list(DROPPED),
        format_func=DROPPED.get,
        key="export_dropped",
        horizontal=True,
        persist_state=SESSION,
    )
    manifest = cleaned_manifest(analysis.dataset, decisions, scores=analysis.scores, dropped=dropped)

    st.subheader("Cleaned manifest")
    st.caption("Columns: sample_id, path, original_label, label, action, score. Undecided samples keep their label.")
    only_decided = st.toggle(
        "Preview decided samples only", value=True, key="export_only_decided", persist_state=SESSION
    )
    preview = manifest[manifest["action"] != "undecided"] if only_decided else manifest
    st.dataframe(safe_csv_frame(preview.head(2000)), width="stretch", hide_index=True, height=260)
    st.caption(
        f"{len(manifest):,} rows in the manifest" + (" (preview shows the first 2,000)" if len(preview) > 2000 else "")
    )

    row = st.columns([2, 3, 1, 1], vertical_alignment="bottom")
    row[0].download_button(
        "Download cleaned CSV",
        manifest_csv_bytes(manifest),
        file_name=f"{slug}-cleaned.csv",
        mime="text/csv",
        key="download-csv",
        type="primary",
        icon=":material/download:",
        on_click="ignore",
    )
    csv_path = row[1].text_input(
        "… or write it to",
        str(default_export_dir(analysis.config.data, analysis.data_id) / "cleaned.csv"),
        key="export_csv_path",
        persist_state=SESSION,
    )
    replace_csv = row[2].checkbox(
        "Replace an existing file",
        key="export_csv_replace",
        help="Without this, a file that exists and is not a manifest oga wrote is never overwritten.",
    )
    if row[3].button("Write CSV", key="write-csv", icon=":material/save:"):
        with ui.guard():
            target = check_manifest_path(Path(csv_path), analysis.dataset, overwrite=replace_csv)
            written = write_manifest(manifest, target)
            st.success(f"Wrote {len(manifest):,} rows to {written}", icon=":material/check_circle:")

    st.subheader("Image-folder copy")
    st.caption(
        "Writes DEST/<label>/<file> for every sample not dropped (relabelled ones under their new label), "
        "plus DEST/manifest.csv: load it back with folder:DEST or csv:DEST/manifest.csv."
    )
    row = st.columns([4, 1, 1], vertical_alignment="bottom")
    dest = row[0].text_input(
        "Destination folder",
        str(default_export_dir(analysis.config.data, analysis.data_id) / "images"),
        key="export_folder",
        persist_state=SESSION,
    )
    overwrite = row[1].checkbox(
        "Overwrite",
        key="export_overwrite",
        help="Replace an earlier oga export in this folder: only the files that export wrote (listed in its "
        ".oga-export.json) are replaced; any other file stays, and a folder oga did not write is refused.",
    )
    if row[2].button("Write image folder", key="write-folder", icon=":material/folder_copy:"):
        with ui.guard():
            bar = st.progress(0.0, text="Copying images …")
            per_class = export_image_folder(
                analysis.dataset,
                manifest,
                Path(dest),
                overwrite=overwrite,
                progress=lambda done, total: (
                    bar.progress(done / total, text=f"Copying images: {done:,} of {total:,}")
                    if done == total or done % 200 == 0
                    else None
                ),
            )
            bar.empty()
            st.success(
                f"Copied {sum(per_class.values()):,} images in {len(per_class)} classes to {Path(dest).expanduser().resolve()}",
                icon=":material/check_circle:",
            )

    row = st.columns([2, 3], vertical_alignment="center")
    if row[0].button("Build the image folder as a .zip", key="zip-folder", icon=":material/folder_zip:"):
        with ui.guard():
            bar = st.progress(0.0, text="Packing images …")
            zip_path, per_class = export_image_zip(
                analysis.dataset,
                manifest,
                oga_home() / "exports" / slug / f"{slug}-cleaned.zip",
                name=f"{slug}-cleaned",
                progress=lambda done, total: (
                    bar.progress(done / total, text=f"Packing images: {done:,} of {total:,}")
                    if done == total or done % 200 == 0
                    else None
                ),
            )
            bar.empty()
            st.session_state["export_zip"] = (str(zip_path), dropped, len(store.events()))
    built, built_dropped, built_events = st.session_state.get("export_zip") or (None, None, None)
    if built and (built_dropped, built_events) != (dropped, len(store.events())):
        row[1].caption("Decisions changed since the .zip was built: build it again.")
    elif built and Path(built).is_file() and Path(built).name.startswith(slug):
        with open(built, "rb") as archive:
            row[1].download_button(
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
        row[1].caption("For a server you cannot reach by file path: the same copy as one download.")

    with st.expander("Decision log (append-only, for audits)"):
        events = store.events()
        st.dataframe(safe_csv_frame(events.tail(500)), width="stretch", hide_index=True)
        st.download_button(
            "Download the decision log",
            manifest_csv_bytes(events),
            file_name=f"{slug}-decision-log.csv",
            mime="text/csv",
            key="download-log",
            on_click="ignore",
        )
