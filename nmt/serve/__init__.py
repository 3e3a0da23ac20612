"""``nmt-serve``: a translation service and an attention explorer page for one checkpoint (the ``serve`` extra).

- :mod:`nmt.serve.batcher`: dynamic micro-batching into one worker thread.
- :mod:`nmt.serve.service`: request limits and checks, the worker's jobs (framework-free).
- :mod:`nmt.serve.explore`: the explorer page's data (every layer's and head's attention).
- :mod:`nmt.serve.app`: the FastAPI application (routes, JSON errors, body-size limit, static files).
- ``static/``: the page (plain HTML, CSS and JavaScript; no network access needed).
"""
