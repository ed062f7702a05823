"""``oga``: every capability of the app, headless.

    oga analyze --data SOURCE --out DIR [...]   scores.csv + run.json (+ model.pt)
    oga decide  --data SOURCE --sample ID (--keep | --drop | --relabel CLASS)
    oga undo    --data SOURCE                   revert the last decision
    oga export  --data SOURCE --out FILE.csv [--folder DIR]
    oga bench   [--quick]                       detection quality and speed tables

Bad input ends with one line on stderr (``oga: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from oga_core.errors import OgaError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", required=True, help="demo:digits | demo:mnist5k | folder:PATH | csv:PATH | torchvision:NAME:ROOT"
    )
    p.add_argument("--noise", type=float, default=0.0, help="flip this fraction of labels on purpose (truth kept)")
    p.add_argument("--noise-kind", default="symmetric", choices=["symmetric", "pair"])
    p.add_argument("--seed", type=int, default=0, help="seeds the noise, the model's initialisation and training")
    p.add_argument("--image-size", type=int, default=32, help="side in pixels file images are resized to (default 32)")
    p.add_argument("--grayscale", action="store_true", help="read file images as one channel")
    p.add_argument(
        "--skip-unreadable", action="store_true", help="leave out corrupt or unreadable images instead of stopping"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oga", description="Outlier Gradient Analysis: find and fix detrimental training samples."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="train or load a model, score every sample, write scores.csv and run.json")
    _add_data_args(a)
    a.add_argument("--out", required=True, type=Path, help="output folder")
    a.add_argument(
        "--model",
        default="small_cnn",
        help="small_cnn | resnet18 | resnet34 | resnet50 | resnet18_imagenet | resnet50_imagenet",
    )
    a.add_argument(
        "--checkpoint", type=Path, help="state dict to load (weights only); skips training unless --epochs is given"
    )
    a.add_argument(
        "--epochs", type=int, help="training epochs (default: 12 for small_cnn, 8 otherwise, 0 with --checkpoint)"
    )
    a.add_argument("--batch-size", type=int, default=128)
    a.add_argument("--lr", type=float, default=2e-3)
    a.add_argument(
        "--scope",
        default="last",
        choices=["last", "all"],
        help="gradient of the last layer (closed form) or of all layers",
    )
    a.add_argument(
        "--detector",
        default="l2",
        choices=["l1", "l2", "iforest", "loss", "el2n", "margin"],
        help="score that decides 'flagged' (default l2: the OGA gradient L2 norm)",
    )
    a.add_argument("--budget", type=float, default=0.05, help="fraction of samples to flag (default 0.05)")
    a.add_argument("--per-class", action="store_true", help="rank samples within their class")
    a.add_argument("--device", default="auto", help="auto | cpu | cuda")
    a.add_argument("--quiet", action="store_true", help="no progress bars")

    d = sub.add_parser("decide", help="record a decision on one sample (as the app's Review page does)")
    _add_data_args(d)
    d.add_argument("--sample", required=True, action="append", help="sample id (repeatable)")
    act = d.add_mutually_exclusive_group(required=True)
    act.add_argument("--keep", action="store_true")
    act.add_argument("--drop", action="store_true")
    act.add_argument("--relabel", metavar="CLASS", help="class name (or index) to relabel to")
    act.add_argument("--clear", action="store_true", help="forget the decision")

    u = sub.add_parser("undo", help="revert the last decision on a data set")
    _add_data_args(u)

    e = sub.add_parser("export", help="write the cleaned manifest (and an image-folder copy)")
    _add_data_args(e)
    e.add_argument("--out", required=True, type=Path, help="manifest CSV to write")
    e.add_argument("--folder", type=Path, help="also copy the cleaned data set here as <class>/<image>")
    e.add_argument(
        "--dropped",
        default="exclude",
        choices=["exclude", "mark"],
        help="leave dropped samples out, or keep them marked",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier oga export in --folder (only the files that export wrote; nothing else is touched)",
    )
    e.add_argument(
        "--overwrite-out",
        action="store_true",
        help="replace --out even if it exists and is not a manifest oga wrote",
    )

    b = sub.add_parser("bench", help="detection quality and speed, side by side with the baselines")
    b.add_argument("--quick", action="store_true", help="one small setting (for CI): a few minutes on 2 CPU cores")
    b.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="markdown report to write")
    b.add_argument("--device", default="auto")
    b.add_argument("--parts", default="quality,speed,scaling", help="comma-separated subset of quality,speed,scaling")
    b.add_argument(
        "--merge",
        type=Path,
        metavar="JSON",
        help="merge another run's results (e.g. a GPU speed run) into --out's, then rewrite the report",
    )
    return parser


def _progress_bars(quiet: bool) -> Callable[[str, int, int], None] | None:
    """tqdm bars per stage on a terminal; nothing when stderr is a file or pipe (logs and scripts
    get the summary line, and a failure stays one line), unless OGA_PROGRESS=1 asks for lines."""
    if quiet or not sys.stderr.isatty():
        return _stage_lines() if os.environ.get("OGA_PROGRESS") == "1" and not quiet else None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            # A pty that reports no size (ssh -T, `script`, CI runners) makes tqdm measure -1 rows and
            # hide every bar; shutil falls back to $COLUMNS / $LINES or 80 x 24.
            size = shutil.get_terminal_size()
            bar = bars[stage] = tqdm(
                total=total,
                desc=f"{stage:>9}",
                unit="",
                leave=True,
                file=sys.stderr,
                ncols=min(100, size.columns),
                nrows=max(size.lines, 10),
            )
        ending = (done, total) == (1, 1)  # the pipeline ends every stage with (1, 1)
        if ending and bar.total > 1:  # keep the stage's real count on the finished bar
            done = total = bar.total
        bar.total = total
        bar.n = done
        bar.refresh()
        if ending:
            bar.close()
            del bars[stage]

    return report


def _stage_lines() -> Callable[[str, int, int], None]:
    """Without a terminal: one line as each stage starts."""
    started: set[str] = set()

    def report(stage: str, done: int, total: int) -> None:
        if stage not in started:
            started.add(stage)
            print(f"oga: {stage} ...", file=sys.stderr, flush=True)

    return report


def cmd_analyze(args: argparse.Namespace) -> int:
    from oga_core.evaluate import detection_metrics
    from oga_core.pipeline import AnalysisConfig, analyze
    from oga_core.store import write_json

    config = AnalysisConfig(
        data=args.data,
        model=args.model,
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        scope=args.scope,
        detector=args.detector,
        budget=args.budget,
        per_class=args.per_class,
        noise=args.noise,
        noise_kind=args.noise_kind,
        seed=args.seed,
        device=args.device,
        image_size=args.image_size,
        grayscale=args.grayscale,
        skip_unreadable=args.skip_unreadable,
    )
    out: Path = args.out
    _writable_dir(out)
    analysis = analyze(config, progress=_progress_bars(args.quiet))
    analysis.scores.to_csv(out / "scores.csv", index=False)
    run = dict(analysis.run)
    if analysis.noise is not None:
        metrics = detection_metrics(analysis.scores, analysis.noise.noisy, budget=config.budget)
        run["detection"] = metrics.set_index("score").to_dict(orient="index")
    write_json(out / "run.json", run)
    model_file = analysis.cache.get("model", analysis.keys["model"])
    if model_file is not None:
        (out / "model.pt").write_bytes((model_file / "model.pt").read_bytes())
    _summary(analysis, run)
    return 0


def _summary(analysis, run: dict) -> None:
    t = run["timings"]
    hits = f" (cached: {', '.join(run['cache_hits'])})" if run["cache_hits"] else ""
    print(
        f"{run['num_samples']} samples, {run['num_classes']} classes; train accuracy {run['train_accuracy']:.3f}; "
        f"flagged {run['num_flagged']} by {analysis.config.detector} in {t['total']:.1f} s{hits}"
    )
    if run.get("decisions_carried_over"):
        print(f"carried {run['decisions_carried_over']} decision(s) over from an earlier version of this data")
    if "detection" in run:
        print("AUROC vs injected noise: " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in run["detection"].items()))


def _data_config(args: argparse.Namespace):
    from oga_core.pipeline import AnalysisConfig

    return AnalysisConfig(
        data=args.data,
        noise=args.noise,
        noise_kind=args.noise_kind,
        seed=args.seed,
        image_size=args.image_size,
        grayscale=args.grayscale,
        skip_unreadable=args.skip_unreadable,
    )


def _open_data(args: argparse.Namespace):
    """The data set named by the data arguments, its id, and its decision store."""
    from oga_core.decisions import DecisionStore
    from oga_core.pipeline import adopt_earlier_decisions, load_data
    from oga_core.store import Cache

    config = _data_config(args)
    config.validate()
    loaded = load_data(config, Cache())
    carried = adopt_earlier_decisions(config, loaded.dataset, loaded.data_id)
    if carried:
        print(f"carried {carried} decision(s) over from an earlier version of this data (oga undo takes them back)")
    return loaded, DecisionStore.for_data(loaded.data_id)


def class_index(text: str, classes: Sequence[str]) -> int:
    """A class given by name (or, failing that, by index) -> its index; OgaError if unknown."""
    if text in classes:
        return list(classes).index(text)
    if text.isdigit() and int(text) < len(classes):
        return int(text)
    raise OgaError(
        f"unknown class '{text}': choose one of {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}"
    )


def cmd_decide(args: argparse.Namespace) -> int:
    from oga_core.decisions import Decision

    loaded, store = _open_data(args)
    ds = loaded.dataset
    position = {sid: i for i, sid in enumerate(ds.ids)}
    action = "keep" if args.keep else "drop" if args.drop else "clear" if args.clear else "relabel"
    new_label = class_index(args.relabel, ds.classes) if action == "relabel" else None
    items = []
    for sid in args.sample:
        if sid not in position:
            raise OgaError(f"no sample '{sid}' in {args.data}")
        items.append(Decision(sid, action, int(ds.labels[position[sid]]), new_label))
    store.decide_many(items)
    counts = store.counts()
    print(f"{action} {len(items)} sample(s); decisions now: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    _, store = _open_data(args)
    undone = store.undo()
    print(f"undid the last decision on {', '.join(undone)}" if undone else "nothing to undo")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from oga_core.export import (
        check_destination,
        check_manifest_path,
        cleaned_manifest,
        export_image_folder,
        write_manifest,
    )

    loaded, store = _open_data(args)
    check_manifest_path(args.out, loaded.dataset, overwrite=args.overwrite_out)  # refuse bad places before writing
    if args.folder is not None:
        check_destination(args.folder, loaded.dataset, overwrite=args.overwrite)
    scores = _latest_scores(store.path.parent)
    manifest = cleaned_manifest(loaded.dataset, store.table(), scores=scores, dropped=args.dropped)
    if args.folder is not None:  # first: --out may name a file inside --folder
        per_class = export_image_folder(loaded.dataset, manifest, args.folder, overwrite=args.overwrite)
        print(f"copied {sum(per_class.values())} images in {len(per_class)} classes to {args.folder}")
    write_manifest(manifest, args.out)
    counts = manifest["action"].value_counts().to_dict()
    print(
        f"wrote {len(manifest)} rows to {args.out} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"
    )
    if scores is None:
        print(
            "note: this data, with these --noise / --seed / --skip-unreadable settings, has no analysis on "
            "record: the score column is empty (run oga analyze with the same data settings)"
        )
    return 0


def _latest_scores(workspace: Path):
    """The scores of the workspace's latest analysis, or None (never analysed, or unreadable)."""
    import pandas as pd

    latest = workspace / "latest_scores.parquet"
    if not latest.is_file():
        return None
    try:
        return pd.read_parquet(latest)
    except Exception as exc:  # a torn file from a crash: the decisions matter, the scores can be redone
        print(f"oga: note: ignoring unreadable {latest} ({type(exc).__name__}); run oga analyze again", file=sys.stderr)
        return None


def cmd_bench(args: argparse.Namespace) -> int:
    from oga_core import bench

    return bench.main(args)


def _writable_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OgaError(f"--out {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OgaError(f"cannot create output folder {path}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = os.environ.get("OGA_THREADS", "").strip()
    if threads:
        if not threads.isdigit():
            print(f"oga: error: OGA_THREADS must be a whole number, not '{threads}'", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(max(1, int(threads)))
    handlers = {
        "analyze": cmd_analyze,
        "decide": cmd_decide,
        "undo": cmd_undo,
        "export": cmd_export,
        "bench": cmd_bench,
    }
    try:
        return handlers[args.command](args)
    except OgaError as exc:
        print(f"oga: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oga: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the app home or an output on a full, read-only or missing disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"oga: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("oga: error: out of memory; try a smaller --batch-size or --image-size", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
