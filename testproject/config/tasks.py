"""The project's Soniq application. Jobs register on it with ``@app.job()``."""

from soniq import Soniq

app = Soniq()
