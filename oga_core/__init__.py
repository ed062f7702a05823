"""oga: find the training samples that hurt a model by Outlier Gradient Analysis, and fix them.

The engine is pure Python + PyTorch and never imports streamlit; the app and the ``oga`` CLI are
thin layers over the same functions.
"""

from oga_core.errors import DataError, ModelError, OgaError

__all__ = ["DataError", "ModelError", "OgaError", "__version__"]
__version__ = "0.1.0"
