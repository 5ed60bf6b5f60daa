"""Embedders: what turns memory texts into vectors, checked before anything is stored.

An embedder is a callable ``texts -> vectors`` or an object with ``embed(texts)``
(and optionally ``name`` and ``dim``). Its name and dimension are stored with
every vector, so a search made with another embedder is refused
(:class:`~statekeel.errors.EmbedderMismatchError`) instead of comparing vectors
from two different spaces. The default is WordLlama, whose 256-dimensional
weights ship inside its wheel: no download at run time (extra ``statekeel[memory]``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, Union

from ...errors import EmbedderMismatchError, InvalidInputError, MissingDependencyError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]
else:
    Matrix = Any

__all__ = ["DEFAULT", "Embedder", "Embedding", "mismatch", "numpy", "resolve_embedder"]

Embedder = Union[Callable[[list[str]], Any], Any]
"""A callable ``list[str] -> vectors`` or an object with ``embed(texts)`` (and ``name``/``dim``)."""

DEFAULT: Final = "default"
"""``embedder="default"``: WordLlama when ``statekeel[memory]`` is installed, else text-only."""

INSTALL_HINT: Final = "install the extra: pip install 'statekeel[memory]'"
WORDLLAMA_NAME: Final = "wordllama/l2_supercat-256"
_lock = threading.Lock()
_default: Embedding | None = None


def numpy() -> Any:
    """The numpy module, or a typed error saying which extra brings it."""
    try:
        import numpy as np
    except ImportError as exc:
        raise MissingDependencyError(f"vector search needs numpy; {INSTALL_HINT}") from exc
    return np


class Embedding:
    """A checked embedder: batches, validates shape and values, normalises to unit length."""

    def __init__(self, fn: Callable[[list[str]], Any], name: str, dim: int | None, batch_size: int = 64) -> None:
        self._fn = fn
        self.name = name
        self.dim = dim
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str]) -> Matrix:
        """Unit vectors of ``texts`` as a float32 matrix (one row per text)."""
        np = numpy()
        rows = [self._batch(list(texts[i : i + self.batch_size])) for i in range(0, len(texts), self.batch_size)]
        if len(rows) == 1:
            return rows[0]
        out: Matrix = np.concatenate(rows) if rows else np.zeros((0, self.dim or 0), dtype=np.float32)
        return out

    def _batch(self, texts: list[str]) -> Matrix:
        np = numpy()
        try:
            out = np.asarray(self._fn(texts), dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"the embedder {self.name!r} returned something that is not a list of "
                                    f"vectors ({exc}); it must return one list of floats per text") from exc
        if out.ndim != 2 or out.shape[0] != len(texts):
            raise InvalidInputError(f"the embedder {self.name!r} returned shape {out.shape} for {len(texts)} "
                                    "texts; it must return one vector per text")
        if self.dim is None:
            self.dim = int(out.shape[1])
        if out.shape[1] != self.dim:
            raise InvalidInputError(f"the embedder {self.name!r} returned vectors of dimension {out.shape[1]}, "
                                    f"not {self.dim}; give it a fixed dimension (or a new name)")
        if not np.isfinite(out).all():
            raise InvalidInputError(f"the embedder {self.name!r} returned NaN or infinite values; nothing was "
                                    "stored — fix the embedder")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        result: Matrix = out / norms
        return result


def resolve_embedder(embedder: Embedder | None, batch_size: int = 64) -> Embedding | None:
    """The checked form of ``embedder``; None means text-only (no vectors stored)."""
    if embedder is None:
        return None
    if isinstance(embedder, Embedding):
        return embedder
    if isinstance(embedder, str):
        if embedder != DEFAULT:
            raise InvalidInputError(f"embedder={embedder!r}: give a callable, an object with embed(texts), "
                                    f"None (text-only) or {DEFAULT!r}")
        return default_embedder(required=False)
    fn = getattr(embedder, "embed", None)
    call = fn if callable(fn) else embedder
    if not callable(call):
        raise InvalidInputError(f"embedder must be a callable texts -> vectors or have embed(texts); got "
                                f"{type(embedder).__name__}")
    name = getattr(embedder, "name", None)
    if not isinstance(name, str) or not name:
        name = f"{getattr(embedder, '__module__', '?')}.{getattr(embedder, '__qualname__', type(embedder).__name__)}"
    dim = getattr(embedder, "dim", None)
    return Embedding(call, name, dim if isinstance(dim, int) and not isinstance(dim, bool) else None, batch_size)


def default_embedder(*, required: bool) -> Embedding | None:
    """WordLlama loaded from the weights in its wheel (once per process); None when not installed."""
    global _default
    with _lock:
        if _default is None:
            try:
                import wordllama  # type: ignore[import-untyped]  # ships no type information
                from wordllama import WordLlama
            except ImportError as exc:
                if required:
                    raise MissingDependencyError(f"the default embedder is WordLlama; {INSTALL_HINT}, "
                                                 "or pass embedder=your_function") from exc
                return None
            from pathlib import Path

            here = Path(wordllama.__file__).parent  # weights/ and tokenizers/ ship in the wheel
            try:
                model = WordLlama.load(cache_dir=here, disable_download=True)
            except (FileNotFoundError, ValueError) as exc:  # a wheel without its weights: never download
                raise MissingDependencyError(f"WordLlama's bundled weights are missing ({exc}); reinstall "
                                             "wordllama, or pass embedder=your_function") from exc
            _default = Embedding(lambda texts: model.embed(texts), WORDLLAMA_NAME, 256)
        return _default


def mismatch(stale: list[str], embedding: Embedding) -> EmbedderMismatchError:
    """The error for vectors made by another embedder (``stale``: what made each)."""
    return EmbedderMismatchError(
        f"{len(stale)} memories have vectors from another embedder ({', '.join(sorted(set(stale)))}), "
        f"not {embedding.name} ({embedding.dim} dimensions); run `statekeel memory reindex URL` or "
        "memory.reindex() to re-embed them, or search with mode='text'"
    )
