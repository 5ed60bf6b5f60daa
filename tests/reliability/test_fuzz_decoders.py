"""Fuzzing what reads stored or user-given bytes (issue 10, suite part 4).

Whatever the bytes, a decoder either returns a value or raises a typed statekeel
error — never a raw ``JSONDecodeError``, ``UnicodeDecodeError``, ``zlib.error``,
zstd or base64 error, ``KeyError`` or ``TypeError``:

* ``Codec.decode`` / ``decode_many`` over random bytes × every codec name
  (``json``, ``tjson1``, ``+zlib``, ``+zstd``, ``+aesgcm`` with a real key):
  :class:`CorruptionError` naming the record, :class:`IntegrityError` for
  failed authenticated decryption (or :class:`KeyUnavailableError` when the
  damaged envelope names a data-key version that does not exist);
* real envelopes with one flipped bit;
* store URLs: ``statekeel.open`` / ``open_backend`` open or raise :class:`ConfigurationError`;
* export folders with a damaged file: ``import_store`` raises a typed error.

Counts are moderate in CI; ``STATEKEEL_RELIABILITY=long`` raises them (see conftest.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statekeel
from statekeel.backends import open_backend
from statekeel.codec import Codec
from statekeel.errors import (
    ConfigurationError,
    CorruptionError,
    IntegrityError,
    KeyUnavailableError,
    StatekeelError,
    StoreError,
)
from statekeel.portability import export_store, import_store

from .conftest import scale

FUZZ = settings(
    max_examples=scale(150, 3000), deadline=None, derandomize=not os.environ.get("STATEKEEL_RELIABILITY"),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BASES = ("json", "tjson1")
STEPS = ("", "+zlib", "+zstd", "+aesgcm", "+zlib+aesgcm", "+zstd+aesgcm")
CODECS = [b + s for b in BASES for s in STEPS]
KEY = bytes(range(32))


@pytest.fixture(autouse=True)
def _report(request: pytest.FixtureRequest, reliability_report: Any) -> Any:
    """Each fuzz target reports what it ran (its failures are pytest's outcome in the document)."""
    yield
    chosen = getattr(request.function, "_hypothesis_internal_use_settings", None)  # set by @settings
    if chosen is not None:
        reliability_report("fuzzing", "codec/urls/exports", target=request.node.name,
                           max_examples=chosen.max_examples, found=[])


@pytest.fixture(scope="module")
def encrypted() -> Any:
    """A store with a real AES-GCM key: its codec decodes every codec name."""
    store = statekeel.open("memory://", encryption=statekeel.Encryption(master_key=KEY))
    store.session("s").state.put("k", 1)  # creates the partition's data key
    yield store
    store.close()


CONTEXT = "session/s/state/k"

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def _decode_typed(store: Any, data: bytes, name: str, codec: Codec | None = None) -> None:
    """Open (encryption is the sealed backend's step, bound to the record's key and version) and decode."""
    try:
        if name.endswith("+aesgcm"):
            data, name = store.backend.open_value(data, name, CONTEXT, b"r", 1)
        (codec or store.codec).decode(data, name, CONTEXT)
    except (CorruptionError, IntegrityError, KeyUnavailableError) as exc:  # a flipped key version names no key
        if isinstance(exc, CorruptionError):
            assert exc.key == CONTEXT and "statekeel doctor" in str(exc)


@FUZZ
@given(data=st.binary(max_size=300), name=st.sampled_from(CODECS))
def test_random_bytes_decode_or_raise_a_typed_error(encrypted: Any, data: bytes, name: str) -> None:
    # plain names go to the codec directly: an encrypted store refuses them outright; fuzz the parsers too
    _decode_typed(encrypted, data, name)


@FUZZ
@given(data=st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_decode_many_of_damaged_json_raises_corruption(encrypted: Any, data: list[bytes]) -> None:
    try:
        out = encrypted.codec.decode_many([(d, "json") for d in data], CONTEXT)
    except CorruptionError:
        return
    assert len(out) == len(data)


@FUZZ
@given(value=values, name=st.sampled_from(CODECS), bit=st.integers(min_value=0))
def test_one_flipped_bit_in_an_envelope_never_escapes_raw(encrypted: Any, value: Any, name: str, bit: int) -> None:
    codec: Codec = encrypted.codec
    base, _, steps = name.partition("+")
    if "zlib" in steps or "zstd" in steps:
        codec = codec.compressing("zlib" if "zlib" in steps else "zstd")
    data, written = codec.encode(value, "value", CONTEXT)
    if steps.endswith("aesgcm"):  # sealed as the store seals version 1 of CONTEXT
        data, written = encrypted.backend._cipher.seal(data, CONTEXT, b"r", 1), written + "+aesgcm"
    damaged = bytearray(data)
    damaged[(bit // 8) % len(damaged)] ^= 1 << (bit % 8)
    _decode_typed(encrypted, bytes(damaged), written, codec)


@pytest.mark.parametrize(
    "tagged",
    [
        b'{"$sk":"float","v":"abc"}', b'{"$sk":"dict","v":5}', b'{"$sk":"tuple"}', b'{"$sk":"nope","v":1}',
        b'{"$sk":["x"],"v":1}', b'{"$sk":"bytes","v":"%%%"}', b'{"$sk":"datetime","v":"yesterday"}',
        b'{"$sk":"uuid","v":"x"}', b'{"$sk":"decimal","v":"x"}', b'{"$sk":"timedelta","v":[1]}',
        b'{"$sk":"dataclass","cls":5,"v":{}}', b"[" * 100_000, b"\xff\xfe", b"",
    ],
)
def test_damaged_tags_raise_corruption_naming_the_record(tagged: bytes) -> None:
    with pytest.raises(CorruptionError) as info:
        Codec().decode(tagged, "tjson1", CONTEXT)
    assert info.value.key == CONTEXT


def test_an_unknown_codec_or_transform_is_a_store_error() -> None:
    for name in ("msgpack", "json+lz4"):
        with pytest.raises(StoreError):
            Codec().decode(b"{}", name, CONTEXT)


# -- store URLs -------------------------------------------------------------------------------
junk = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
local_urls = st.one_of(
    junk,
    st.builds(lambda s, r: f"{s}://{r}", st.sampled_from(["memory", "nope", "", "SQLITE", "x+y"]), junk),
    st.builds(lambda r, q: f"sqlite:///rel/{r}.db?{q}", st.text("abc%/?#&=", max_size=8), junk),
    st.builds(lambda r, q: f"file://./rel/{r}?{q}", st.text("abc%?#&=", max_size=8), junk),
    st.builds(lambda h, p: f"{h}://{p}", st.sampled_from(["file", "sqlite"]), st.text("ab:@[]", max_size=8)),
    st.builds(lambda s, p: f"{s}://h:{p}/0", st.sampled_from(["redis", "postgresql"]), st.text("x-9[]", min_size=1, max_size=8)
              .filter(lambda p: not p.isdigit())),
)


@FUZZ
@given(url=local_urls, options=st.dictionaries(st.sampled_from(["migrate", "bogus", "tenant"]), st.booleans(), max_size=1))
def test_random_store_urls_open_or_raise_configuration_error(
    monkeypatch: pytest.MonkeyPatch, url: str, options: dict[str, bool]
) -> None:
    for opener in (statekeel.open, open_backend):
        with tempfile.TemporaryDirectory() as fresh:
            monkeypatch.chdir(fresh)  # relative paths land in a new, empty folder
            try:
                opened = opener(url, **options)
            except ConfigurationError:
                continue
            opened.close()


# -- export folders ---------------------------------------------------------------------------
def _export(tmp_path: Path) -> Path:
    source = statekeel.open(f"sqlite:///{tmp_path}/src.db")
    s = source.session("s1")
    s.append({"role": "user", "content": "hi"}, "two")
    s.state.put("k", {"v": 1})
    source.events("e").append("t", {"x": 1})
    source.close()
    folder = tmp_path / "export"
    export_store(f"sqlite:///{tmp_path}/src.db", folder)
    return folder


@pytest.fixture(scope="module")
def export_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("export")
    folder = _export(root)
    return folder, sorted(p for p in folder.rglob("*") if p.is_file())


@settings(max_examples=scale(40, 600), deadline=None, derandomize=not os.environ.get("STATEKEEL_RELIABILITY"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pick=st.integers(min_value=0), at=st.integers(min_value=0), how=st.sampled_from(["flip", "cut", "junk"]))
def test_a_damaged_export_imports_or_raises_a_typed_error(
    export_files: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory, pick: int, at: int, how: str
) -> None:
    folder, files = export_files
    work = tmp_path_factory.mktemp("damaged")
    copy = work / "export"
    for f in files:
        target = copy / f.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
    victim = copy / files[pick % len(files)].relative_to(folder)
    raw = bytearray(victim.read_bytes())
    if how == "flip" and raw:
        raw[at % len(raw)] ^= 1 << (at % 8)
    elif how == "cut":
        raw = raw[: at % (len(raw) + 1)]
    else:
        raw[at % (len(raw) + 1):at % (len(raw) + 1)] = b"\x00{\xff"
    victim.write_bytes(bytes(raw))
    try:
        import_store(copy, f"sqlite:///{work}/dst.db")
    except StatekeelError:
        pass
