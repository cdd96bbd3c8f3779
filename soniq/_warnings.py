"""Point warnings at the user's line, however deep inside soniq they are raised."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _inside(filename: str) -> bool:
    # soniq's own frames, and asgiref's when an async call crossed to Django's sync thread.
    return filename.startswith(_PACKAGE_DIR) or "asgiref" in filename


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` with the stack level of the first frame outside soniq."""
    level = 1
    frame = sys._getframe(1)
    while frame.f_back is not None and _inside(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level + 1)
