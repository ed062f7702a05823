"""``oga bench``: detection quality, speed and memory, scaling — see :mod:`oga_core.bench.runner`."""
