"""``oga``: every capability of the app, headless.

    oga analyze --data SOURCE --out DIR [...]   scores.csv + run.json (+ model.pt)
    oga decide  --data SOURCE --sample ID (--keep | --drop | --relabel CLASS | --clear)
    oga undo    --data SOURCE                   revert the last decision
    oga export  --data SOURCE --out FILE.csv [--folder DIR] [--hf DIR]
    oga recover --data SOURCE                   rebuild a damaged decisions database
    oga retrain --data SOURCE [--out DIR]       retrain with the decisions applied; before/after
    oga cache   info | clear [--step STEP]      what the cache holds; free it (decisions stay)
    oga bench   [--quick | --render]            detection quality, speed, scaling -> oga-bench/

Bad input ends with one line on stderr (``oga: error: ...``) and exit status 2, never a traceback;
notices that did not stop the work are ``oga: note: ...`` lines. Option names, defaults and help
texts come from :mod:`oga_core.options` and :mod:`oga_core.detectors`. The engine modules that
import torch are imported inside the commands that need them, so ``oga --help`` and ``oga cache``
start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from oga_core import detectors, options
from oga_core.bench import runner as bench
from oga_core.config import AnalysisConfig
from oga_core.errors import OgaError
from oga_core.progress import StageProgress


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=options.SOURCE_SYNTAX)
    p.add_argument("--noise", type=float, default=0.0, help=options.NOISE_HELP)
    p.add_argument(
        "--noise-kind",
        default=options.DEFAULT_NOISE_KIND,
        choices=options.names(options.NOISE_KINDS),
        help="; ".join(f"{c.name}: {c.help}" for c in options.NOISE_KINDS),
    )
    p.add_argument("--seed", type=int, default=0, help=options.SEED_HELP)
    p.add_argument("--image-size", type=int, default=None, help=options.IMAGE_SIZE_HELP)
    p.add_argument("--grayscale", action="store_true", help=options.GRAYSCALE_HELP)
    p.add_argument("--skip-unreadable", action="store_true", help=options.SKIP_UNREADABLE_HELP)


class _LiteralHelp(argparse.HelpFormatter):
    """Help texts as written: they come from options.py, shared with the app, where "5%" is a
    percent sign, not an argparse placeholder."""

    def _expand_help(self, action: argparse.Action) -> str:
        return self._get_help_string(action) or ""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _LiteralHelp)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="oga", description="Outlier Gradient Analysis: find and fix detrimental training samples.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    a = sub.add_parser("analyze", help="train or load a model, score every sample, write scores.csv and run.json")
    _add_data_args(a)
    a.add_argument("--out", required=True, type=Path, help="output folder")
    a.add_argument(
        "--model",
        default=options.DEFAULT_MODEL,
        help="; ".join(f"{c.name}: {c.help}" for c in options.MODELS)
        + "; or any torchvision classification architecture by name (with --weights or --pretrained)",
    )
    a.add_argument("--checkpoint", type=Path, help=options.CHECKPOINT_HELP)
    a.add_argument("--weights", type=Path, help=options.WEIGHTS_HELP)
    a.add_argument(
        "--backbone",
        default=options.DEFAULT_BACKBONE,
        choices=options.names(options.BACKBONES),
        help=options.BACKBONE_HELP,
    )
    a.add_argument("--pretrained", action="store_true", help=options.PRETRAINED_HELP)
    a.add_argument("--epochs", type=int, help=options.EPOCHS_HELP)
    a.add_argument("--holdout", type=float, default=options.DEFAULT_HOLDOUT, help=options.HOLDOUT_HELP)
    a.add_argument("--batch-size", type=int, help=options.BATCH_SIZE_HELP)
    a.add_argument("--lr", type=float, help=options.LR_HELP)
    a.add_argument(
        "--scope",
        default=options.DEFAULT_SCOPE,
        choices=options.names(options.SCOPES),
        help="; ".join(f"{c.name}: {c.help}" for c in options.SCOPES),
    )
    a.add_argument(
        "--detector",
        default=options.DEFAULT_DETECTOR,
        choices=list(detectors.DETECTORS),
        help="score that decides 'flagged'. "
        + options.DEFAULT_DETECTOR_WHY
        + " "
        + "; ".join(f"{d.name}: {d.help}" for d in detectors.DETECTORS.values()),
    )
    a.add_argument("--budget", type=float, default=options.DEFAULT_BUDGET, help=options.BUDGET_HELP)
    a.add_argument("--per-class", action="store_true", help=options.PER_CLASS_HELP)
    a.add_argument("--device", default="auto", help=options.DEVICE_HELP)
    a.add_argument("--workers", type=int, help=options.WORKERS_HELP)
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
        "--hf",
        type=Path,
        metavar="DIR",
        help="also write the cleaned data set here as a Hugging Face dataset (save_to_disk's layout: "
        "datasets.load_from_disk(DIR) or hf:DIR load it)",
    )
    e.add_argument(
        "--dropped",
        default="exclude",
        choices=["exclude", "mark"],
        help="leave dropped samples out, or keep them marked",
    )
    e.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier oga export in --folder / --hf (only the files that export wrote; nothing else is "
        "touched)",
    )
    e.add_argument(
        "--overwrite-out",
        action="store_true",
        help="replace --out even if it exists and is not a manifest oga wrote",
    )

    r = sub.add_parser(
        "recover",
        help="move a damaged decisions database aside (never deleted) and rebuild it from what is still readable",
    )
    _add_data_args(r)

    t = sub.add_parser(
        "retrain",
        help="retrain the latest analysis' recipe with the decisions applied (drops out, relabels in) and compare",
    )
    _add_data_args(t)
    t.add_argument("--out", type=Path, help="also write retrain.json and scores_after.csv here")
    t.add_argument("--top", type=int, default=20, help="how many of the samples whose rank moved most to list")
    t.add_argument("--device", help="train on this device instead of the analysis' own (auto | cpu | cuda)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    m = sub.add_parser("similar", help="more like this: the nearest samples of one sample, with their decisions")
    _add_data_args(m)
    m.add_argument("--sample", required=True, help="sample id")
    m.add_argument("--k", type=int, default=options.DEFAULT_SIMILAR, help=options.SIMILAR_HELP)
    m.add_argument(
        "--space",
        default=options.MAP_SPACES[0].name,
        choices=options.names(options.MAP_SPACES),
        help=options.SPACE_HELP,
    )
    m.add_argument("--csv", type=Path, help="write the neighbours to this CSV instead of printing them")

    n = sub.add_parser(
        "noise-left",
        help="estimate the wrong labels left below the cut from the decisions, and pick samples to spot-check",
    )
    _add_data_args(n)
    n.add_argument("--spot-check", type=int, default=0, metavar="N", help=options.SPOT_CHECK_HELP)

    c = sub.add_parser("cache", help="what oga's cache holds, and clearing it (decisions are never touched)")
    c.add_argument("action", choices=["info", "clear"])
    c.add_argument("--step", action="append", help="clear only this step's entries (repeatable), e.g. model")

    bench.add_arguments(sub.add_parser("bench", help="detection quality and speed, side by side with the baselines"))
    return parser


def _progress_bars(quiet: bool) -> StageProgress | None:
    """tqdm bars per stage on a terminal; nothing when stderr is a file or pipe (logs and scripts
    get the summary line, and a failure stays one line), unless OGA_PROGRESS=1 asks for lines."""
    if quiet or not sys.stderr.isatty():
        return _stage_lines() if os.environ.get("OGA_PROGRESS") == "1" and not quiet else None
    from tqdm import tqdm  # only on a terminal

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


def _stage_lines() -> StageProgress:
    """Without a terminal: one line as each stage starts."""
    started: set[str] = set()

    def report(stage: str, done: int, total: int) -> None:
        if stage not in started:
            started.add(stage)
            print(f"oga: {stage} ...", file=sys.stderr, flush=True)

    return report


def _config(args: argparse.Namespace, **more: object) -> AnalysisConfig:
    """The data settings every command shares, plus ``more``; validated."""
    return AnalysisConfig(
        data=args.data,
        noise=args.noise,
        noise_kind=args.noise_kind,
        seed=args.seed,
        image_size=args.image_size,
        grayscale=args.grayscale,
        skip_unreadable=args.skip_unreadable,
        **more,  # type: ignore[arg-type]
    ).validate()


def cmd_analyze(args: argparse.Namespace) -> int:
    from oga_core import distributed  # torch: only for commands that compute
    from oga_core.pipeline import analyze, write_results

    config = _config(
        args,
        model=args.model,
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        weights=str(args.weights) if args.weights else None,
        backbone=args.backbone,
        pretrained=args.pretrained,
        epochs=args.epochs,
        holdout=args.holdout,
        batch_size=args.batch_size,
        lr=args.lr,
        scope=args.scope,
        detector=args.detector,
        budget=args.budget,
        per_class=args.per_class,
        device=args.device,
    )
    out: Path = args.out
    if args.workers is not None and args.workers < 0:
        raise OgaError("--workers must be 0 or more")
    world = distributed.from_environment()  # launched by torchrun: one of several processes
    if world is not None:
        distributed.start(world)
    try:
        if world is None or world.leader:
            _writable_dir(out)
        bars = _progress_bars(args.quiet) if world is None or world.leader else None
        analysis = analyze(config, progress=bars, workers=args.workers, world=world)
    except BaseException:
        if world is not None:
            distributed.stop(synchronise=False)
        raise
    if world is not None:
        distributed.stop()
    if world is not None and not world.leader:
        return 0  # rank 0 records and writes the results; the others have nothing to say
    analysis.workspace.record(analysis)
    run = write_results(analysis, out)
    t = run["timings"]
    hits = f" (cached: {', '.join(run['cache_hits'])})" if run["cache_hits"] else ""
    across = f" on {run['world_size']} processes" if run["world_size"] > 1 else ""
    print(
        f"{run['num_samples']} samples, {run['num_classes']} classes; train accuracy {run['train_accuracy']:.3f}; "
        f"flagged {run['num_flagged']} by {config.detector} in {t['total']:.1f} s{across}{hits}"
    )
    checkup = run["health"]
    if checkup["holdout_accuracy"] is not None:
        print(
            f"health: {checkup['verdict']}; held-out accuracy {checkup['holdout_accuracy']:.3f} "
            f"on {checkup['holdout_size']} samples never trained on"
        )
    if run.get("noise_estimate"):
        from oga_core.transition import summary

        print(summary(run["noise_estimate"]))
    if run.get("decisions_carried_over"):
        print(f"carried {run['decisions_carried_over']} decision(s) over from an earlier version of this data")
    if "detection" in run:
        print("AUROC vs injected noise: " + ", ".join(f"{k} {v['auroc']:.3f}" for k, v in run["detection"].items()))
    return 0


def _open_data(args: argparse.Namespace):
    """The data set named by the data arguments and its workspace (registered, so decisions of an
    earlier version of the same source are carried over)."""
    from oga_core.pipeline import load_data
    from oga_core.store import Cache
    from oga_core.workspace import Workspace

    config = _config(args)
    loaded = load_data(config, Cache())
    workspace = Workspace(loaded.data_id)
    carried = workspace.register(config.data_settings(), loaded.dataset)
    if carried:
        print(f"carried {carried} decision(s) over from an earlier version of this data (oga undo takes them back)")
    return loaded, workspace


def class_index(text: str, classes: Sequence[str]) -> int:
    """A class given by name (or, failing that, by index) -> its index; OgaError if unknown."""
    if text in classes:
        return list(classes).index(text)
    if text.isascii() and text.isdecimal() and int(text) < len(classes):
        return int(text)
    more = " ..." if len(classes) > 20 else ""
    raise OgaError(f"unknown class '{text}': choose one of {', '.join(classes[:20])}{more}")


def cmd_decide(args: argparse.Namespace) -> int:
    from oga_core.data import index_of
    from oga_core.decisions import Decision

    loaded, workspace = _open_data(args)
    ds = loaded.dataset
    position = index_of(ds.ids)
    action = "keep" if args.keep else "drop" if args.drop else "clear" if args.clear else "relabel"
    new_label = class_index(args.relabel, ds.classes) if action == "relabel" else None
    items = []
    for sid in args.sample:
        if sid not in position:
            raise OgaError(f"no sample '{sid}' in {args.data}")
        items.append(Decision(sid, action, int(ds.labels[position[sid]]), new_label))
    store = workspace.decisions()
    store.decide_many(items)
    counts = store.counts()
    print(f"{action} {len(items)} sample(s); decisions now: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    _, workspace = _open_data(args)
    undone = workspace.decisions().undo()
    print(f"undid the last decision on {', '.join(undone)}" if undone else "nothing to undo")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from oga_core.export import (
        check_destination,
        check_manifest_path,
        cleaned_manifest,
        export_hf,
        export_image_folder,
        write_manifest,
    )

    loaded, workspace = _open_data(args)
    # refuse bad places before writing anything
    out = check_manifest_path(args.out, loaded.dataset, overwrite=args.overwrite_out)
    folders = [check_destination(f, loaded.dataset, overwrite=args.overwrite) for f in (args.folder, args.hf) if f]
    if len(folders) == 2 and (
        folders[0] == folders[1] or folders[0] in folders[1].parents or folders[1] in folders[0].parents
    ):
        raise OgaError(f"--folder {args.folder} and --hf {args.hf} overlap; give them separate folders")
    scores = workspace.latest_scores()
    manifest = cleaned_manifest(loaded.dataset, workspace.decisions().table(), scores=scores, dropped=args.dropped)
    if args.folder is not None:  # first: --out may name a file inside --folder
        per_class = export_image_folder(loaded.dataset, manifest, args.folder, overwrite=args.overwrite)
        print(f"copied {sum(per_class.values())} images in {len(per_class)} classes to {args.folder}")
    if args.hf is not None:
        per_split = export_hf(loaded.dataset, manifest, args.hf, overwrite=args.overwrite)
        listed = ", ".join(f"{name} {n}" for name, n in per_split.items())
        print(f"wrote a Hugging Face dataset of {sum(per_split.values())} samples ({listed}) to {args.hf}")
    write_manifest(manifest, out)
    counts = manifest["action"].value_counts().to_dict()
    print(f"wrote {len(manifest)} rows to {out} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
    if scores is None:
        print(
            "note: this data, with these --noise / --seed / --skip-unreadable settings, has no analysis on "
            "record: the score column is empty (run oga analyze with the same data settings)"
        )
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    from oga_core.pipeline import load_data
    from oga_core.store import Cache
    from oga_core.workspace import Workspace

    loaded = load_data(_config(args), Cache())
    workspace = Workspace(loaded.data_id)
    done = workspace.recover_decisions()
    where = f"; the damaged file is kept as {done.aside}" if done.aside else ""
    sources = ", ".join(done.sources) or "nothing readable"
    print(f"rebuilt {done.decisions} decision(s) and {done.events} event(s) from {sources}{where}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from oga_core.retrain import lines, retrain, write_retrain
    from oga_core.roots import check_allowed

    if args.out is not None:
        check_allowed(args.out, "the output folder")
        _writable_dir(args.out)
    if args.top < 0:
        raise OgaError(f"--top must be 0 or more, got {args.top}")
    _, workspace = _open_data(args)
    config = _latest_config(workspace, "retraining repeats its recipe")
    if args.device:
        config = dataclasses.replace(config, device=args.device)
    result = retrain(
        config.validate(), workspace.decisions().table(), progress=_progress_bars(args.quiet), top=args.top
    )
    for line in lines(result.summary):
        print(line)
    if args.out is not None:
        write_retrain(result, args.out)
        print(f"wrote retrain.json and scores_after.csv to {args.out}")
    return 0


def _latest_config(workspace, why: str) -> AnalysisConfig:
    """The settings of the workspace's latest analysis (what the person last saw ranked)."""
    run = workspace.latest_run()
    if run is None or not isinstance(run.get("config"), dict):
        raise OgaError(
            "this data, with these --noise / --seed / --skip-unreadable settings, has no analysis on record: run "
            f"oga analyze with the same data settings first ({why})"
        )
    return AnalysisConfig.from_dict(run["config"])


def cmd_similar(args: argparse.Namespace) -> int:
    from oga_core.neighbors import similar
    from oga_core.pipeline import analyze
    from oga_core.summaries import with_decisions

    if args.k < 1:
        raise OgaError(f"--k must be at least 1, got {args.k}")
    _, workspace = _open_data(args)
    analysis = analyze(_latest_config(workspace, "the neighbours are those of its model").validate())
    near = similar(analysis, args.sample, k=args.k, space=args.space)
    decided = with_decisions(analysis.scores, workspace.decisions().table(), analysis.dataset.classes)
    near = near.merge(decided[["sample_id", "decision", "new_label_name"]], on="sample_id", how="left")
    if args.csv is not None:
        from oga_core.export import safe_csv_frame
        from oga_core.files import atomic_path
        from oga_core.roots import check_allowed

        check_allowed(args.csv, "the CSV file")
        if args.csv.exists() or args.csv.is_symlink():  # never over a file oga did not write
            raise OgaError(f"{args.csv} already exists: give a new file name")
        with atomic_path(args.csv) as tmp:
            safe_csv_frame(near).to_csv(tmp, index=False)
        print(f"wrote {len(near)} neighbours of {args.sample} to {args.csv}")
        return 0
    print(near.to_string(index=False))
    return 0


def cmd_noise_left(args: argparse.Namespace) -> int:
    from oga_core import remaining
    from oga_core.pipeline import analyze
    from oga_core.summaries import with_decisions

    if args.spot_check < 0:
        raise OgaError(f"--spot-check must be 0 or more, got {args.spot_check}")
    _, workspace = _open_data(args)
    analysis = analyze(_latest_config(workspace, "the cut is that of its ranking").validate())
    table = with_decisions(analysis.scores, workspace.decisions().table(), analysis.dataset.classes)
    print(remaining.estimate(table).line())
    if args.spot_check:
        ids = remaining.spot_check(table, n=args.spot_check)
        print(
            f"review these {len(ids)} random samples below the cut (keep the right ones, drop or relabel the wrong "
            "ones), then ask again:"
        )
        print("\n".join(ids))
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from oga_core.store import Cache

    cache = Cache()
    if args.action == "info":
        info = cache.info()
        if not info:
            print(f"the cache in {cache.root} is empty")
        for step, row in info.items():
            print(f"{step:<12} {row['entries']:>6} entries {row['bytes'] / 2**20:>10.1f} MiB")
        if info:
            total = sum(r["bytes"] for r in info.values())
            print(f"{'total':<12} {sum(r['entries'] for r in info.values()):>6} entries {total / 2**20:>10.1f} MiB")
        return 0
    freed = cache.clear(args.step)
    print(f"cleared {', '.join(freed) or 'nothing'}: {sum(freed.values()) / 2**20:.1f} MiB freed (decisions untouched)")
    if args.step is None:
        from oga_core.uploads import clean_uploads

        removed = clean_uploads()
        if removed:
            print(f"removed {len(removed)} upload(s) that no analysed data set uses")
    return 0


def _writable_dir(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise OgaError(f"--out {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OgaError(f"cannot create output folder {path}: {exc.strerror or exc}") from None


class _NoteHandler(logging.Handler):
    """The ``oga`` logger's warnings as ``oga: note: ...`` lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"oga: note: {record.getMessage()}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log = logging.getLogger("oga")
    handler = _NoteHandler(logging.WARNING)
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False  # notes once, as oga lines, not twice
    handlers = {
        "analyze": cmd_analyze,
        "decide": cmd_decide,
        "undo": cmd_undo,
        "export": cmd_export,
        "recover": cmd_recover,
        "retrain": cmd_retrain,
        "similar": cmd_similar,
        "noise-left": cmd_noise_left,
        "cache": cmd_cache,
        "bench": bench.main,
    }
    try:
        if args.command != "bench":
            from oga_core.store import check_home  # numpy: not for `oga --help`

            check_home()
        if args.command in ("analyze", "bench", "recover"):
            from oga_core.train import configure_threads  # torch: only for commands that compute

            configure_threads()
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
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


if __name__ == "__main__":
    raise SystemExit(main())
