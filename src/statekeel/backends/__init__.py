"""Backends, chosen by URL scheme; each driver is imported only when its scheme is used."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigurationError
from ..protocol import Backend
from ._url import SCHEMES, ParsedURL, parse

__all__ = ["open_backend", "SCHEMES", "ParsedURL", "parse"]

_EXTRAS = {"postgres": "postgres", "redis": "redis"}


def open_backend(url: str, **options: Any) -> Backend:
    """Open the backend that ``url``'s scheme names, importing its driver lazily."""
    parsed = parse(url)
    module_name, _, class_name = SCHEMES[parsed.scheme].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = next((e for m, e in _EXTRAS.items() if m in module_name), None)
        hint = f"pip install 'statekeel[{extra}]'" if extra else "upgrade statekeel"
        raise ConfigurationError(
            f"the {parsed.scheme}:// backend is not available ({exc.name} is missing); {hint}"
        ) from exc
    backend: Backend = getattr(module, class_name)(parsed, **options)
    return backend
