"""The module componentize-py builds: the author's `app` module wrapped as the
routeiq:filter `filter` export (see _export.py)."""

import app  # the plugin author's module: guest-examples/python/<name>/app.py

from routeiq_guest._export import make_export

Filter = make_export(app)
