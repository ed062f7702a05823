"""Bytes of downloads, made when the person clicks, not on every page run.

``st.download_button`` accepts a callable for its data, called when the button is clicked (in a
thread of its own), so a page that offers a 60 MB manifest of a million samples costs nothing
until someone asks for it. :func:`cached` keeps the last few results by a key that names what
they depend on (the data, the settings, the decisions' version), so a second click, or another
tab's, is served at once. No Streamlit here.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

CAPACITY = 2  # a manifest of a million samples is ~60 MB: keep only the latest couple
_lock = threading.Lock()
_made: OrderedDict[Hashable, bytes] = OrderedDict()


def cached(key: Hashable, make: Callable[[], bytes]) -> bytes:
    """``make()``'s bytes, kept under ``key`` (the last :data:`CAPACITY` keys are kept)."""
    with _lock:
        found = _made.get(key)
        if found is not None:
            _made.move_to_end(key)
            return found
    data = make()  # outside the lock: two different downloads are made side by side
    with _lock:
        _made[key] = data
        while len(_made) > CAPACITY:
            _made.popitem(last=False)
    return data
