"""What the files backend writes inside its files: records, log headers, log lines.

A stored value is embedded as readable JSON (``"value": …``) whenever its bytes
are exactly the compact JSON of that value — true for the ``json`` and
``tjson1`` codecs — so reading it back gives the very same bytes. A chat message
in the short ``msg:<role>`` form (copied or exported from a backend that writes it,
see :mod:`statekeel.codec_msg`) is its content as ``"text"``. Anything else
(compressed, encrypted, or JSON written differently) is kept as
``"data_base64"``. Either way the round trip is exact by construction.

Every record and every log line carries its checksum (``"crc"``, see
:mod:`statekeel.protocol.integrity`), verified on every read; files written
before checksums existed have none and are read unchecked. A file that does not
parse is reported as :class:`~statekeel.errors.CorruptionError` naming its key.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from itertools import repeat
from operator import methodcaller
from typing import Any, cast
from zlib import crc32

from ...errors import CorruptionError, StoreError
from ...protocol import Record
from ...protocol.integrity import MASK, entry_sum, head, record_sum, verify_entry, verify_record

__all__ = [
    "LogHeader",
    "Line",
    "embed",
    "extract",
    "record_text",
    "parse_record",
    "header_text",
    "parse_header",
    "line_text",
    "parse_line",
    "json_run",
]

_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _pretty(doc: dict[str, Any]) -> str:
    """Pretty JSON with the top-level keys sorted (a value keeps its own key order)."""
    ordered = {k: doc[k] for k in sorted(doc)}
    text = json.dumps(ordered, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in a key: \u-escape it instead
        text = json.dumps(ordered, ensure_ascii=True, indent=2, allow_nan=False) + "\n"
    return text


def _json_exact(data: bytes) -> tuple[bool, Any]:
    """(True, value) when ``data`` is exactly the compact JSON of ``value``."""
    try:
        value = json.loads(data)
        same = _compact(value).encode("utf-8") == data
    except (ValueError, RecursionError, UnicodeError):
        return False, None
    return same, value


def _short_text(data: bytes, codec: str) -> str | None:
    """The content of a short-form message (``msg:<role>``, no transform after it), else None."""
    if not codec.startswith("msg:") or "+" in codec:
        return None
    try:
        return data.decode("utf-8")  # strict: the text encodes back to the very same bytes
    except UnicodeDecodeError:
        return None


def embed(data: bytes, codec: str = "") -> dict[str, Any]:
    """``{"value": …}`` when the bytes are exact compact JSON, ``{"text": …}`` for a short-form
    message, else ``{"data_base64": …}``."""
    text = _short_text(data, codec)
    if text is not None:
        return {"text": text}
    exact, value = _json_exact(data)
    if exact:
        return {"value": value}
    return {"data_base64": base64.b64encode(data).decode("ascii")}


def extract(doc: dict[str, Any], where: str) -> bytes:
    """The stored bytes of a record or line document."""
    if "value" in doc:
        return _compact(doc["value"]).encode("utf-8")
    if "text" in doc:
        if type(doc["text"]) is not str:
            raise StoreError(f"{where} has a 'text' that is not a string; restore it from a backup")
        return doc["text"].encode("utf-8")
    if "data_base64" in doc:
        return base64.b64decode(doc["data_base64"], validate=True)
    raise StoreError(f"{where} has neither 'value' nor 'data_base64'; restore it from a backup")


# -- records ------------------------------------------------------------------
def record_text(rec: Record) -> str:
    doc: dict[str, Any] = {
        "key": rec.key,
        "codec": rec.codec,
        "version": rec.version,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "expires_at": rec.expires_at,
        "crc": record_sum(rec.key, rec.codec, rec.data, rec.version),
    }
    doc.update(embed(rec.data, rec.codec))
    return _pretty(doc)


def parse_record(key: str, text: bytes, where: str) -> Record:
    """The record in a record file, its checksum verified; :class:`CorruptionError` if damaged."""
    try:
        doc = json.loads(text)
        rec = Record(
            key,
            extract(doc, where),
            str(doc["codec"]),
            _int(doc["version"]),
            float(doc["created_at"]),
            float(doc["updated_at"]),
            None if doc["expires_at"] is None else float(doc["expires_at"]),
        )
        crc = _crc(doc)
    except (ValueError, KeyError, TypeError, RecursionError, StoreError) as exc:
        raise CorruptionError(
            f"record {key!r} ({where}) is damaged: not a valid record file ({exc!r}); "
            "restore it from a backup or delete it",
            key,
        ) from exc
    verify_record(key, rec.codec, rec.data, rec.version, crc)
    return rec


def _int(value: Any) -> int:
    """An int field: refuses floats and booleans (a damaged ``1`` must not read as ``1.5`` -> 1)."""
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _crc(doc: dict[str, Any]) -> int | None:
    """The stored checksum, or None for a file written before checksums."""
    crc = doc.get("crc")
    return None if crc is None else _int(crc)


# -- log headers --------------------------------------------------------------
@dataclass
class LogHeader:
    """The small ``<name>.log.json`` file beside a log's lines."""

    log: str
    first_seq: int
    """Entries below this were trimmed (their lines may remain until compaction)."""
    last_seq: int
    """A floor: the real last seq is the larger of this and the last line's."""
    created_at: float
    updated_at: float
    """A floor: the real value is the larger of this and the last line's time."""
    expires_at: float | None


def header_text(h: LogHeader) -> str:
    return _pretty(
        {
            "log": h.log,
            "first_seq": h.first_seq,
            "last_seq": h.last_seq,
            "created_at": h.created_at,
            "updated_at": h.updated_at,
            "expires_at": h.expires_at,
        }
    )


def parse_header(text: bytes, where: str, log: str = "") -> LogHeader:
    """A log header; :class:`CorruptionError` naming the log if it does not parse."""
    try:
        d = json.loads(text)
        return LogHeader(
            str(d["log"]),
            _int(d["first_seq"]),
            _int(d["last_seq"]),
            float(d["created_at"]),
            float(d["updated_at"]),
            None if d["expires_at"] is None else float(d["expires_at"]),
        )
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise CorruptionError(
            f"the header of log {log or where!r} ({where}) is damaged ({exc!r}); run `statekeel doctor --repair` "
            "to rebuild it from the log's lines (undoes trims not yet compacted, clears its expiry), "
            "or restore it from a backup",
            log or where,
        ) from exc


# -- log lines ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """One parsed JSON Lines entry."""

    seq: int
    created_at: float
    codec: str
    data: bytes
    more: int
    """How many lines of the same append follow this one (0 = the append is complete)."""
    crc: int | None = None
    """The stored checksum (None: written before checksums)."""

    def verify(self, log: str) -> Line:
        """This line, if its checksum matches; else :class:`CorruptionError` naming log and seq."""
        verify_entry(log, self.seq, self.codec, self.data, self.crc)
        return self


def line_text(log: str, seq: int, created_at: float, codec: str, data: bytes, more: int) -> str:
    """One compact line; ``seq`` first so a line's position can be read cheaply."""
    head = f'{{"seq":{seq},"created_at":{created_at!r},"codec":{_compact(codec)}'
    if more:
        head += f',"more":{more}'
    head += f',"crc":{entry_sum(log, codec, data, seq)}'
    text = _short_text(data, codec)
    if text is not None:
        return f'{head},"text":{_compact(text)}}}\n'
    exact, _ = _json_exact(data)
    if exact:
        return f'{head},"value":{data.decode("utf-8")}}}\n'
    return f'{head},"data_base64":"{base64.b64encode(data).decode("ascii")}"}}\n'


# The exact shape line_text writes; anything else (say, a line edited by hand)
# goes through the general JSON parser.
_FAST = re.compile(
    rb'\{"seq":(\d+),"created_at":([0-9eE.+-]+),"codec":("(?:[^"\\]|\\.)*")(?:,"more":(\d+))?'
    rb'(?:,"crc":(\d+))?,"value":'
)


def parse_line(raw: bytes) -> Line | None:
    """The entry on one line (without its newline), or None if it is not a valid line."""
    m = _FAST.match(raw)
    if m is not None and raw.endswith(b"}"):
        try:
            quoted = m[3]
            codec = quoted[1:-1].decode("utf-8") if b"\\" not in quoted else json.loads(quoted)
            data = raw[m.end() : -1]  # damage inside it is caught by the checksum
            crc = None if m[5] is None else int(m[5])
            return Line(int(m[1]), float(m[2]), str(codec), data, int(m[4] or 0), crc)
        except (ValueError, TypeError):
            return None
    try:
        doc = json.loads(raw)
        return Line(
            _int(doc["seq"]), float(doc["created_at"]), str(doc["codec"]),
            extract(doc, "a log line"), _int(doc.get("more", 0)), _crc(doc),
        )
    except (ValueError, KeyError, TypeError, AttributeError, StoreError, RecursionError):
        return None


_JSON = b'"json"'
_GROUP = {n: methodcaller("group", n) for n in (1, 3, 5)}
_CLOSED = methodcaller("endswith", b"}")


def json_run(log: str, buf: bytes, lo_seq: int, hi_seq: int) -> list[tuple[bytes, str]] | None:
    """``(data, "json")`` of the whole lines in ``buf`` if every one is a ``json`` line in the shape
    :func:`line_text` writes, with a checksum that matches and a seq in ``[lo_seq, hi_seq)``; else None.

    The history reload's fast path: C loops over all the lines (regex match, group, CRC-32,
    one list comparison) instead of a :class:`Line` and a checksum call per line. None
    sends the caller to the line-by-line path, which names a damaged entry.
    """
    lines = buf.split(b"\n")
    if lines.pop() != b"":
        return None
    found = list(map(_FAST.match, lines))
    if not all(found) or not all(map(_CLOSED, lines)):
        return None
    matches = cast("list[re.Match[bytes]]", found)
    codecs, crcs = list(map(_GROUP[3], matches)), list(map(_GROUP[5], matches))
    if codecs.count(_JSON) != len(codecs) or None in crcs:
        return None
    seqs = list(map(int, map(_GROUP[1], matches)))
    if seqs and (min(seqs) < lo_seq or max(seqs) >= hi_seq):
        return None
    datas = [line[m.end() : -1] for line, m in zip(lines, matches)]
    want = [(crc - seq) & MASK for crc, seq in zip(map(int, crcs), seqs)]
    if list(map(crc32, datas, repeat(head(log, "json")))) != want:
        return None
    return list(zip(datas, repeat("json")))


def line_seq(raw: bytes) -> int | None:
    """Just the seq of a line (for binary search)."""
    m = re.match(rb'\{"seq":(\d+)', raw)
    if m is not None:
        return int(m[1])
    parsed = parse_line(raw)
    return None if parsed is None else parsed.seq
