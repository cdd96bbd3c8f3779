"""Django views: ``metrics``, the queue gauges of :mod:`soniq.metrics` for Prometheus.

Opt in from your ``urls.py`` (and keep it off the public internet: it tells queue names and
sizes, no job data)::

    from soniq.views import metrics

    urlpatterns = [..., path("soniq/metrics", metrics)]
"""

from __future__ import annotations

import threading
from typing import Any

from django.http import HttpRequest, HttpResponse

from soniq.commands._settings import soniq_settings

_registries: dict[str, Any] = {}
_lock = threading.Lock()


def _registry(alias: str) -> Any:
    """One registry (and one cache) per database alias, for the life of the process."""
    from soniq.metrics import QueueCollector, _client, django_reader

    with _lock:
        if alias not in _registries:
            registry = _client().CollectorRegistry()
            # In a request the connection is Django's, handled as the request's.
            registry.register(QueueCollector(django_reader(alias, close=False)))
            _registries[alias] = registry
        return _registries[alias]


def metrics(request: HttpRequest) -> HttpResponse:
    """The queue gauges in Prometheus' text format."""
    from soniq.metrics import _client

    client = _client()
    registry = _registry(soniq_settings().database)
    return HttpResponse(client.generate_latest(registry), content_type=client.CONTENT_TYPE_LATEST)
