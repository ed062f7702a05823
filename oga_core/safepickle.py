"""Reading pickled arrays without running code.

Some data sets ship as pickles (CIFAR's "python version" batches, the animal-mnist wheel's
arrays). ``pickle.load`` runs whatever a crafted file names; :class:`ArrayUnpickler` builds only
dicts, lists, strings, numbers and numpy arrays and refuses every other class.
"""

from __future__ import annotations

import pickle


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler for files that hold only arrays, lists, dicts, strings and numbers."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles spell a bytes object: str -> bytes, no code
    }

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: the file should hold only arrays and lists")
