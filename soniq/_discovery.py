"""Finding the jobs and the Soniq app a worker process should serve."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from soniq.core.errors import ConfigurationError

if TYPE_CHECKING:
    from soniq.app import Soniq


def import_modules(names: Iterable[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import jobs module {name!r} (JOBS_MODULES): {exc}"
            ) from exc


def load_app(path: str) -> Soniq:
    """``"package.module:attribute"`` -> the Soniq instance it names."""
    from soniq.app import Soniq

    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"APP must look like 'package.module:attribute', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r} for APP={path!r}: {exc}") from exc
    app = getattr(module, attribute, None)
    if not isinstance(app, Soniq):
        raise ConfigurationError(f"APP={path!r} is {app!r}, not a Soniq instance")
    return app


def choose_app(path: str | None) -> Soniq:
    """The app named by ``path``, or else the one instance that has jobs registered."""
    if path:
        return load_app(path)
    from soniq.app import instances

    with_jobs = [app for app in list(instances) if len(app.registry)]
    if len(with_jobs) == 1:
        return with_jobs[0]
    if not with_jobs:
        raise ConfigurationError(
            "no Soniq app with registered jobs was found. Put jobs in a module named 'jobs' "
            "in an installed app, list their modules in JOBS_MODULES, or pass --app."
        )
    raise ConfigurationError(
        f"{len(with_jobs)} Soniq apps have jobs registered; pick one with --app "
        "'module:attribute' or SONIQ['APP']"
    )
