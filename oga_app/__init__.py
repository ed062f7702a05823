"""The Streamlit layer of oga. Nothing here computes: the engine is ``oga_core``; this package
only turns its results into widgets and its widgets' values into calls.

From the bottom up:

* ``registry``: the analyses held in memory for every session (no Streamlit);
* ``resources``: what the server process holds (the registry, decision stores, caches, threads);
* ``state``: the session's settings and the last analysed ones saved in the app home;
* ``callbacks``: widget callbacks that write decisions, and the messages they queue;
* ``messages``: errors as messages (``guard``) and data shown as text (``escape_md``);
* ``loading``: the session's analysis with live progress, and its table of decisions;
* ``figures`` (Plotly), ``cards`` (thumbnails, card grid, one at a time), ``actions`` (bulk
  buttons, undo), ``sidebar``, ``form`` (the Set-up form);
* ``entry``: how a page in pages/ receives the analysis from app.py (the router);
* ``e2e``: a real server and Chromium, for the browser test and the screenshots.
"""
