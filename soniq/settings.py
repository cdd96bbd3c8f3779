"""``from soniq.settings import SoniqSettings``, as the specification spells it."""

from soniq.core.settings import SoniqSettings, build_settings

__all__ = ["SoniqSettings", "build_settings"]
