"""Decoded pixels that may be larger than memory: a ``.npy`` file read and written a row at a time.

An analysis reads its images as uint8 ``(N, C, H, W)``. Up to ``STREAM_FROM_BYTES`` that is an
in-memory array; beyond it, a :class:`PixelFile`, which reads the rows a batch asks for with
``os.pread`` — resident memory stays that of a batch, whatever N is (memory-mapping would count
every page ever touched in the process's resident set). Both answer ``pixels[i]``,
``pixels[a:b]`` and ``pixels[index_array]`` with an in-memory array, so training and scoring need
not know which they have. The decode step writes the file with :class:`RowWriter` (``os.pwrite``
of each row as it is decoded, never the whole array).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# 256 MiB of decoded pixels (e.g. 87 k RGB images at 32 px, 5 k at 128 px) stay in memory;
# $OGA_STREAM_FROM_BYTES moves the line (the tests stream small sets with it).
STREAM_FROM_BYTES = 256 << 20


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of a C-ordered ``.npy`` file."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        return tuple(shape), np.dtype(dtype), f.tell()


class PixelFile:
    """uint8 ``(N, C, H, W)`` in a ``.npy`` file, read on demand; ``rows`` (optional) selects and
    orders a subset of the file's rows without copying anything."""

    def __init__(self, path: Path, rows: np.ndarray | None = None) -> None:
        self.path = Path(path)
        shape, dtype, self._offset = _header(self.path)
        if dtype != np.uint8 or len(shape) != 4:
            raise ValueError(f"{self.path} holds {dtype} {shape}, not uint8 (N, C, H, W)")
        self._file_rows = shape[0]
        self._row_shape = tuple(shape[1:])
        self._row_bytes = int(np.prod(self._row_shape))
        expected = self._offset + self._file_rows * self._row_bytes
        if os.path.getsize(self.path) < expected:
            raise ValueError(f"{self.path} is truncated")
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self._row_shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    @property
    def nbytes(self) -> int:
        return len(self) * self._row_bytes

    def __len__(self) -> int:
        return self._file_rows if self.rows is None else len(self.rows)

    def subset(self, rows: np.ndarray) -> PixelFile:
        """The rows ``rows`` of this view (in that order), sharing the file."""
        base = np.arange(self._file_rows) if self.rows is None else self.rows
        return PixelFile(self.path, base[np.asarray(rows, dtype=np.int64)])

    def __getitem__(self, key: int | slice | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self._read(np.array([int(key)]))[0]
        if isinstance(key, slice):
            return self._read(np.arange(len(self))[key])
        if hasattr(key, "numpy"):  # a torch index tensor
            key = key.numpy()
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self._read(key.astype(np.int64))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _read(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` of this view: one ``pread`` per run of consecutive file rows."""
        if len(index) and (index.min() < -len(self) or index.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        index = np.where(index < 0, index + len(self), index)
        file_rows = index if self.rows is None else self.rows[index]
        out = np.empty((len(file_rows), *self._row_shape), dtype=np.uint8)
        flat = out.reshape(len(file_rows), -1)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            start = 0
            while start < len(file_rows):
                stop = start + 1
                while stop < len(file_rows) and file_rows[stop] == file_rows[stop - 1] + 1:
                    stop += 1
                count = (stop - start) * self._row_bytes
                data = os.pread(fd, count, self._offset + int(file_rows[start]) * self._row_bytes)
                if len(data) != count:
                    raise OSError(f"short read from {self.path}")
                flat[start:stop] = np.frombuffer(data, dtype=np.uint8).reshape(stop - start, -1)
                start = stop
        finally:
            os.close(fd)
        return out


class RowWriter:
    """Writes uint8 rows of shape ``row_shape`` into a new ``.npy`` file of ``n`` rows, one
    ``pwrite`` per row (rows never written stay zero)."""

    def __init__(self, path: Path, n: int, row_shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.row_bytes = int(np.prod(row_shape))
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False}
        header["shape"] = (n, *row_shape)
        with open(self.path, "wb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            self.offset = f.tell()
            f.truncate(self.offset + n * self.row_bytes)  # a sparse file: unwritten rows read as zeros
        self._fd = os.open(self.path, os.O_WRONLY)

    def write(self, row: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=np.uint8).tobytes()
        if len(data) != self.row_bytes:
            raise ValueError(f"row {row} has {len(data)} bytes, expected {self.row_bytes}")
        os.pwrite(self._fd, data, self.offset + row * self.row_bytes)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


Pixels = np.ndarray | PixelFile  # what training and scoring read images from


def open_pixels(path: Path, *, stream_from: int | None = None) -> np.ndarray | PixelFile:
    """The pixels in ``path``: in memory up to ``stream_from`` bytes (default
    ``STREAM_FROM_BYTES``, or ``$OGA_STREAM_FROM_BYTES``), else a :class:`PixelFile`."""
    reader = PixelFile(path)
    limit = int(os.environ.get("OGA_STREAM_FROM_BYTES", STREAM_FROM_BYTES)) if stream_from is None else stream_from
    return reader if reader.nbytes > limit else reader[:]


def sample_rows(pixels: np.ndarray | PixelFile, count: int) -> np.ndarray:
    """Up to ``count`` rows spread evenly over ``pixels`` (for statistics that need no more)."""
    n = len(pixels)
    if n <= count:
        return np.asarray(pixels[:])
    return np.asarray(pixels[np.linspace(0, n - 1, count).astype(np.int64)])
