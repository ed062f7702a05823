"""The Streamlit layer of oga: session glue and shared widgets (``ui``), Plotly figures
(``figures``) and the helpers the browser test and the screenshot script share (``e2e``).

Nothing here computes: the engine is ``oga_core``; this package only turns its results into
widgets and its widgets' values into calls.
"""
