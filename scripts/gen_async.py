"""Generate the async twin's plain forwards and the event-loop guard's advice map.

    python scripts/gen_async.py           # rewrite src/statekeel/aio/_generated*.py
    python scripts/gen_async.py --check   # exit 1 when they are not current (tests/test_async_surface.py)

For each sync class in ``TWINS``, every public method that is a *plain forward*
(data in, data out: no callback taken, no handle, iterator or context manager
returned) becomes an ``async def`` with the sync method's own signature text and
docstring, whose body runs the sync call on the store's worker. They go in a
``_<Class>Forwards`` mixin that the hand-written ``Async<Class>`` inherits.
What the hand-written class defines itself (read from its source, so a stale
generated file never gets in the way) is not generated; a public method that
is neither is an error saying what to write.

The advice map (sync qualname -> async spelling, for the loop guard's message)
is derived from both: ``await x.m(...)`` for a coroutine, ``async for`` for an
async generator, ``async with`` for a factory of an async context manager, ...

The output is deterministic and laid out here (no formatter needed).
"""

from __future__ import annotations

import argparse
import ast
import builtins
import collections.abc
import contextlib
import difflib
import importlib
import importlib.util
import inspect
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
AIO = SRC / "statekeel" / "aio"
FORWARDS = AIO / "_generated.py"
ADVICE = AIO.parent / "_twin_advice.py"
HERE = "statekeel.aio._generated"
LINE = 110


@dataclass(frozen=True)
class Twin:
    """A sync class and its hand-written async twin."""

    sync: str
    """``module:Class`` of the sync class."""
    module: str
    """The aio module (``statekeel/aio/<module>.py``) that holds the async class."""
    name: str
    """The async class."""
    target: str | None
    """How the async class reaches the sync object on the worker; None: nothing is forwarded."""
    spoken: str
    """How advice names an instance: ``await <spoken>.append(...)``."""

    @property
    def mixin(self) -> str:
        return f"_{self.sync.partition(':')[2]}Forwards"


TWINS = (
    Twin("statekeel:Store", "_store", "AsyncStore", "self._store", "store"),
    Twin("statekeel:Session", "_session", "AsyncSession", "self._session", "session"),
    Twin("statekeel:SessionBatch", "_session", "AsyncSessionBatch", None, "b"),  # only collects: no I/O
    Twin("statekeel:StateView", "_state", "AsyncStateView", "self._resolve()", "state"),
    Twin("statekeel.features.sessions:SessionState", "_state", "AsyncStateView", None, "session.state"),
    Twin("statekeel:Run", "_runs", "AsyncRun", "self._resolve()", "run"),
    Twin("statekeel:EventStream", "_events", "AsyncEventStream", "self._stream", "stream"),
    Twin("statekeel:Consumer", "_events", "AsyncConsumer", "self._consumer", "consumer"),
    Twin("statekeel:SessionNotes", "_notes", "AsyncSessionNotes", "self._notes", "session.notes"),
    Twin("statekeel:Memory", "_memory", "AsyncMemory", None, "memory"),  # written by hand: _generated.py stays small
    Twin("statekeel:DecisionContext", "_decisions", "AsyncDecisionContext", "self._context", "d"),
)

NO_TWIN: dict[str, str | None] = {
    "Store.close": "await store.aclose()",
    "StateView.put_op": None,  # pure: builds protocol ops for batches; use it on store.sync
}
"""Public sync methods with no same-named twin on purpose, and their advice (tests/test_loopguard.py too)."""

DUNDERS = {
    "__len__": "count()",
    "__contains__": "contains(key)",
    "__getitem__": "require(key)",
    "__setitem__": "put(key, value)",
    "__delitem__": "delete(key)",
}
"""Sync operators and the async method that spells them (where the twin has it)."""

EXTRA_ADVICE = {
    "open": "store = await statekeel.open_async(url)",
    "statekeel.open": "store = await statekeel.open_async(url)",
    "Run.stepfn": "@run.stepfn on an async def, then await it",
}

HANDLES: set[object] = {
    collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator,
    collections.abc.AsyncIterator, collections.abc.AsyncGenerator, contextlib.AbstractContextManager,
    typing.Iterator, typing.Iterable, typing.Generator, typing.ContextManager,
}
"""What a plain forward cannot return (the sync classes of ``TWINS`` are added at run time)."""

CALLBACKS: set[object] = {collections.abc.Callable, typing.Callable}


class SurfaceError(Exception):
    """The async surface cannot be generated as the sources stand; the args say why."""


# -- the hand-written async classes, read from their source ---------------------------------
@dataclass(frozen=True)
class Member:
    """A member of an async class; ``kind``: coroutine, asyncgen, function, property or attribute."""

    kind: str
    optional: tuple[bool, ...] = ()
    """Per parameter after ``self``: whether a call may leave it out."""
    returns: str = ""


@dataclass
class AsyncClass:
    name: str
    bases: list[str]
    members: dict[str, Member]


def read_async_classes(modules: set[str]) -> dict[str, AsyncClass]:
    """The classes of the hand-written ``statekeel/aio`` modules, as their source defines them."""
    found: dict[str, AsyncClass] = {}
    for module in sorted(modules):
        for node in ast.parse((AIO / f"{module}.py").read_text()).body:
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                found[node.name] = AsyncClass(node.name, bases, dict(_class_members(node.body)))
    return found


def _class_members(body: list[ast.stmt]) -> Iterator[tuple[str, Member]]:
    for node in body:
        if isinstance(node, ast.If):  # e.g. `if not TYPE_CHECKING:` refusals of sync spellings
            yield from _class_members(node.body + node.orelse)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not any(ast.unparse(d) == "overload" for d in node.decorator_list):
                yield node.name, _member(node)
            if node.name == "__init__":
                yield from ((name, Member("attribute")) for name in _self_attributes(node))


def _member(node: ast.FunctionDef | ast.AsyncFunctionDef) -> Member:
    returns = ast.unparse(node.returns) if node.returns else ""
    if any(ast.unparse(d) == "property" for d in node.decorator_list):
        return Member("property", returns=returns)
    if isinstance(node, ast.FunctionDef):
        return Member("function", _optional(node.args), returns)
    yields = any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(node))
    return Member("asyncgen" if yields else "coroutine", _optional(node.args), returns)


def _optional(args: ast.arguments) -> tuple[bool, ...]:
    positional = args.posonlyargs + args.args
    required = len(positional) - len(args.defaults)
    flags = [i >= required for i in range(1, len(positional))]  # after self
    flags += [True] * (args.vararg is not None) + [d is not None for d in args.kw_defaults]
    return tuple(flags + [True] * (args.kwarg is not None))


def _self_attributes(init: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    targets = [t for n in ast.walk(init) if isinstance(n, ast.Assign) for t in n.targets]
    targets += [n.target for n in ast.walk(init) if isinstance(n, ast.AnnAssign)]
    return [
        t.attr for t in targets
        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
        and not t.attr.startswith("_")
    ]


# -- where a name in a sync signature comes from, so that the generated module imports it --
@dataclass(frozen=True)
class Import:
    """``from module import attr as local`` (``attr`` None: the module itself, bound as ``local``)."""

    module: str
    attr: str | None
    local: str

    def parts(self) -> tuple[str, str] | None:
        """``(from, what)`` of a from-import; None for a plain ``import module as local``."""
        if self.attr is None and not self.module.startswith("statekeel."):
            return None
        package, name = self.module.rpartition(".")[::2] if self.attr is None else (self.module, self.attr)
        return _relative(package), name + ("" if self.local == name else f" as {self.local}")

    def plain(self) -> str:
        return f"import {self.module}" + ("" if self.local == self.module else f" as {self.local}")

    def load(self) -> object:
        """The object this import binds."""
        module = importlib.import_module(self.module)
        return module if self.attr is None else getattr(module, self.attr, None)


def _relative(module: str) -> str:
    if module.startswith("statekeel.aio."):
        return "." + module.removeprefix("statekeel.aio.")
    if module.startswith("statekeel."):
        return ".." + module.removeprefix("statekeel.")
    return module


class Resolver:
    """Reads statekeel's source: follows a module's imports (TYPE_CHECKING ones too) to a name's home."""

    def __init__(self) -> None:
        self._modules: dict[str, tuple[str, ast.Module, bool]] = {}

    def binding(self, module: str, name: str) -> Import | None:
        """How ``module`` binds ``name``, as an import for the generated module; None for builtins."""
        for node in self._top_level(module):
            found = self._bound_by(module, node, name)
            if found is not None:
                return found
        if hasattr(builtins, name):
            return None
        raise SurfaceError(f"{module}: cannot find where {name!r} comes from")

    def definition(self, module: str, name: str) -> Import:
        """``name`` from the module that defines it, or that exports it in ``__all__``."""
        if not module.startswith("statekeel") or name in self._exported(module):
            return Import(module, name, name)
        found = self.binding(module, name)
        if found is None or found.module == module:
            return Import(module, name, name)
        return Import(found.module, found.attr, name)

    def function(self, fn: Any) -> tuple[str, ast.FunctionDef]:
        """The source of ``fn``'s module and ``fn``'s node in it."""
        source, tree, _ = self._load(fn.__module__)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == fn.__name__:
                if min([node.lineno, *(d.lineno for d in node.decorator_list)]) == fn.__code__.co_firstlineno:
                    return source, node
        raise SurfaceError(f"cannot find the source of {fn.__qualname__}")

    def _bound_by(self, module: str, node: ast.stmt, name: str) -> Import | None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (alias.asname or alias.name.partition(".")[0]) == name:
                    return Import(alias.name if alias.asname else name, None, name)
        elif isinstance(node, ast.ImportFrom):
            return self._from_import(module, node, name)
        elif _defines(node, name):
            return Import(module, name, name)
        return None

    def _from_import(self, module: str, node: ast.ImportFrom, name: str) -> Import | None:
        source = self._absolute(module, node)
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            if source.startswith("statekeel") and _is_module(f"{source}.{alias.name}"):
                return Import(f"{source}.{alias.name}", None, name)
            origin = self.definition(source, alias.name)
            return Import(origin.module, origin.attr, name)
        return None

    def _absolute(self, module: str, node: ast.ImportFrom) -> str:
        if node.level == 0:
            return node.module or ""
        package = module if self._load(module)[2] else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        return f"{package}.{node.module}" if node.module else package

    def _exported(self, module: str) -> set[str]:
        for node in self._top_level(module):
            if isinstance(node, ast.Assign) and _defines(node, "__all__"):
                return set(ast.literal_eval(node.value))
        return set()

    def _top_level(self, module: str) -> Iterator[ast.stmt]:
        pending = list(self._load(module)[1].body)
        while pending:
            node = pending.pop(0)
            if isinstance(node, ast.If):
                pending[:0] = [*node.body, *node.orelse]
            elif isinstance(node, ast.Try):
                pending[:0] = [*node.body, *(s for h in node.handlers for s in h.body), *node.orelse]
            else:
                yield node

    def _load(self, module: str) -> tuple[str, ast.Module, bool]:
        if module not in self._modules:
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise SurfaceError(f"cannot find the source of module {module}")
            source = Path(spec.origin).read_text()
            self._modules[module] = (source, ast.parse(source), spec.origin.endswith("__init__.py"))
        return self._modules[module]


def _defines(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == name
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return any(isinstance(t, ast.Name) and t.id == name for t in targets)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


# -- one forward ---------------------------------------------------------------------------------
@dataclass
class Forward:
    name: str
    params: list[str]
    """The parameters as the sync source spells them (``self``, ``*`` and ``/`` included)."""
    call: list[str]
    returns: str
    doc: str
    imports: set[Import]
    shadows: set[str]
    """Parameters named like a builtin (they get ``# noqa: A002``, as in the sync source)."""


def build_forward(cls: type, name: str, resolver: Resolver, handles: set[object]) -> Forward:
    """The async twin of ``cls.name``, or :class:`SurfaceError` saying why to write it by hand."""
    fn = inspect.getattr_static(cls, name)
    where = f"{cls.__name__}.{name}"
    _check_forwardable(where, fn)
    source, node = resolver.function(fn)
    if node.decorator_list:
        raise SurfaceError(f"{where} is decorated: write its twin by hand")
    params, call, exprs = _signature(node.args, source)
    takes = _bindings(resolver, fn.__module__, exprs)
    gives = _bindings(resolver, fn.__module__, [node.returns] if node.returns else [])
    returns = _segment(source, node.returns) if node.returns else "None"
    if _uses(gives, handles):
        raise SurfaceError(f"{where} returns {returns}: write its twin by hand, wrapping what it returns")
    if _uses(takes, CALLBACKS):
        raise SurfaceError(f"{where} takes a callback: write its twin by hand (refuse coroutine functions, "
                           "as AsyncStateView.update does)")
    shadows = {a.arg for a in _all_args(node.args) if hasattr(builtins, a.arg)}
    return Forward(name, params, call, returns, inspect.cleandoc(fn.__doc__), takes | gives, shadows)


def _check_forwardable(where: str, fn: Any) -> None:
    if isinstance(fn, property):
        raise SurfaceError(f"{where} is a property: write its twin by hand (a property if it only "
                           "reads memory, an async method if it does I/O)")
    if not inspect.isfunction(fn):
        raise SurfaceError(f"{where} is a {type(fn).__name__}: write its twin by hand")
    if typing.get_overloads(fn):
        raise SurfaceError(f"{where} has overloads: write its twin by hand")
    if not fn.__doc__:
        raise SurfaceError(f"{where} has no docstring; its generated twin copies it, so write one")


def _uses(bindings: set[Import], objects: set[object]) -> bool:
    return bool({id(b.load()) for b in bindings} & {id(o) for o in objects})  # by identity: values may not hash


def _bindings(resolver: Resolver, module: str, exprs: list[ast.expr]) -> set[Import]:
    names = sorted({n.id for e in exprs for n in ast.walk(e) if isinstance(n, ast.Name)})
    return {b for n in names if (b := resolver.binding(module, n)) is not None}


def _all_args(args: ast.arguments) -> list[ast.arg]:
    rest = [a for a in (args.vararg, args.kwarg) if a is not None]
    return [*args.posonlyargs, *args.args, *args.kwonlyargs, *rest]


def _signature(args: ast.arguments, source: str) -> tuple[list[str], list[str], list[ast.expr]]:
    """The parameters as written, the arguments of the call that passes them on, the expressions used."""
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params, call = [], []
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        params += [_param(arg, default, source)] + ["/"] * (i == len(args.posonlyargs) - 1)
        call += [arg.arg] if i else []  # the first is self
    if args.vararg is not None:
        params.append("*" + _param(args.vararg, None, source))
        call.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        params.append("*")
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults):
        params.append(_param(arg, kw_default, source))
        call.append(f"{arg.arg}={arg.arg}")
    if args.kwarg is not None:
        params.append("**" + _param(args.kwarg, None, source))
        call.append("**" + args.kwarg.arg)
    used = [a.annotation for a in _all_args(args) if a.annotation] + list(args.defaults)
    return params, call, used + [d for d in args.kw_defaults if d is not None]


def _param(arg: ast.arg, default: ast.expr | None, source: str) -> str:
    text = arg.arg + (f": {_segment(source, arg.annotation)}" if arg.annotation else "")
    if default is None:
        return text
    return text + (" = " if arg.annotation else "=") + _segment(source, default)


def _segment(source: str, node: ast.expr) -> str:
    """The source text of ``node`` (normalised only when it spans lines)."""
    text = ast.get_source_segment(source, node)
    return text if text is not None and "\n" not in text else ast.unparse(node)


# -- rendering -------------------------------------------------------------------------------------
def render_forward(f: Forward, target: str) -> list[str]:
    return ["", *_def_lines(f), *_doc_lines(f.doc), *_body_lines(f, target)]


def _def_lines(f: Forward) -> list[str]:
    head, tail, flat = f"    async def {f.name}(", f") -> {f.returns}:", ", ".join(f.params)
    noqa = "  # noqa: A002" if f.shadows else ""
    if len(head + flat + tail) <= LINE:
        return [head + flat + tail + noqa]
    if len("        " + flat) <= LINE:
        return [head, "        " + flat + noqa, "    " + tail]
    lines = [f"        {p}," + ("  # noqa: A002" if _param_name(p) in f.shadows else "") for p in f.params]
    return [head, *lines, "    " + tail]


def _param_name(param: str) -> str:
    return param.lstrip("*").partition(":")[0].partition("=")[0].strip()


def _doc_lines(doc: str) -> list[str]:
    if '"""' in doc:
        raise SurfaceError(f'a docstring holds """, which the generator does not quote: {doc[:60]!r}')
    quote = 'r"""' if "\\" in doc else '"""'
    first, *rest = doc.splitlines()
    if not rest:
        return [f'        {quote}{first}"""']
    return [f"        {quote}{first}", *(f"        {line}".rstrip() for line in rest), '        """']


def _body_lines(f: Forward, target: str) -> list[str]:
    run = f"        {'await' if f.returns == 'None' else 'return await'} self._worker.run("
    inner = f"{target}.{f.name}({', '.join(f.call)})"
    if len(f"{run}lambda: {inner})") <= LINE:
        return [f"{run}lambda: {inner})"]
    if len(f"            lambda: {inner}") <= LINE:
        return [run, f"            lambda: {inner}", "        )"]
    flat = f"                {', '.join(f.call)}"
    args = [flat] if len(flat) <= LINE else [f"                {c}," for c in f.call]
    return [run, f"            lambda: {target}.{f.name}(", *args, "            )", "        )"]


def render_mixin(twin: Twin, cls: type, forwards: list[Forward]) -> list[str]:
    assert twin.target is not None
    attr = twin.target.removeprefix("self.")
    needs = f"{attr[:-2]}: Callable[[], {cls.__name__}]" if attr.endswith("()") else f"{attr}: {cls.__name__}"
    doc = f"The plain methods of :class:`{cls.__name__}`, awaited (inherited by :class:`{twin.name}`)."
    head = ["", "", f"class {twin.mixin}:", f'    """{doc}"""', "", "    _worker: Worker", f"    {needs}"]
    return head + [line for f in forwards for line in render_forward(f, twin.target)]


def render_imports(imports: set[Import]) -> list[str]:
    """isort's layout: the standard library, then statekeel; one line per module."""
    plain = sorted(i.plain() for i in imports if i.parts() is None)
    grouped: dict[str, set[str]] = {}
    for imp in imports:
        parts = imp.parts()
        if parts is not None:
            grouped.setdefault(parts[0], set()).add(parts[1])
    order = sorted(grouped, key=lambda m: (m.startswith("."), -(len(m) - len(m.lstrip("."))), m))
    std = [_from_line(m, grouped[m]) for m in order if not m.startswith(".")]
    ours = [_from_line(m, grouped[m]) for m in order if m.startswith(".")]
    return ["from __future__ import annotations", "", *plain, *std, "", *ours]


def _from_line(module: str, names: set[str]) -> str:
    ordered = sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))  # isort's order_by_type
    line = f"from {module} import {', '.join(ordered)}"
    if len(line) <= LINE:
        return line
    return "\n".join([f"from {module} import (", *(f"    {n}," for n in ordered), ")"])


GENERATED = '''\
# generated by scripts/gen_async.py — do not edit: change the sync API (or the hand-written
# classes in statekeel/aio), then run `python scripts/gen_async.py`. A stale file fails
# tests/test_async_surface.py.
'''

FORWARDS_DOC = '''\
"""The plain forwards of the async twin.

``_XForwards`` holds, for sync class ``X``, the ``async def`` twin of each public
method that takes and returns plain data: the sync method's own signature and
docstring, its call run on the store's worker. The hand-written ``AsyncX`` in
``statekeel/aio`` inherits it and writes the rest (handles, context managers,
iterators, callbacks).
"""
'''


def render_forwards(mixins: list[list[str]], names: list[str], imports: set[Import]) -> str:
    exported = ["__all__ = [", *(f'    "{n}",' for n in sorted(names)), "]"]
    lines = [GENERATED + FORWARDS_DOC, *render_imports(imports), "", *exported, *(x for m in mixins for x in m)]
    return "\n".join(lines) + "\n"


def render_advice(advice: dict[str, str]) -> str:
    doc = '"""What the event-loop guard advises instead of a blocking sync call (see ``statekeel._loopguard.twin_of``)."""'
    table = [f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}," for k, v in sorted(advice.items())]
    lines = [GENERATED + doc, "", '__all__ = ["ADVICE"]', "", "ADVICE: dict[str, str] = {", *table, "}"]
    return "\n".join([*lines, '"""Sync qualname -> how to write it in async code."""']) + "\n"


# -- the whole surface ---------------------------------------------------------------------------
@dataclass
class Surface:
    twins: list[tuple[Twin, type]]
    classes: dict[str, AsyncClass]
    forwards: dict[str, list[Forward]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)
    """Qualnames already in ``errors``."""


def import_sync_api() -> list[tuple[Twin, type]]:
    """The sync classes, imported with a stand-in for the generated module, so that a stale
    or missing ``_generated.py`` (say, importing a type that moved) never stops its regeneration."""
    sys.path.insert(0, str(SRC))
    stub = types.ModuleType(HERE)
    setattr(stub, "__getattr__", _empty_class)  # PEP 562
    sys.modules[HERE] = stub
    found = []
    for twin in TWINS:
        module, _, name = twin.sync.partition(":")
        found.append((twin, getattr(importlib.import_module(module), name)))
    return found


def _empty_class(name: str) -> type:
    """What the stand-in for ``_generated.py`` gives for each mixin the hand-written classes import."""
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (), {})


def public_members(cls: type) -> dict[str, type]:
    """Public member name -> the class that defines it, in definition order (bases first)."""
    owners: dict[str, type] = {}
    for klass in reversed(cls.__mro__[:-1]):
        owners.update({name: klass for name in vars(klass) if not name.startswith("_")})
    return owners


def plan(surface: Surface, resolver: Resolver) -> None:
    """The forwards of each async class, or errors saying what to write by hand."""
    handles = HANDLES | {cls for _, cls in surface.twins}
    for twin, cls in surface.twins:
        hand = surface.classes[twin.name]
        if twin.target is not None and twin.mixin not in hand.bases:
            surface.errors.append(f"aio/{twin.module}.py: {twin.name} must inherit {twin.mixin} from ._generated")
        made = surface.forwards.setdefault(twin.name, [])
        for name, owner in public_members(cls).items():
            if twin.target is None or name in hand.members or f"{owner.__name__}.{name}" in NO_TWIN:
                continue
            try:
                made.append(build_forward(cls, name, resolver, handles))
            except SurfaceError as exc:
                surface.errors.append(f"{exc} (in aio/{twin.module}.py, class {twin.name})")
                surface.failed.add(f"{owner.__name__}.{name}")


def merge_generated(surface: Surface) -> None:
    """Add the generated forwards to the members of the classes that inherit them."""
    for name, forwards in surface.forwards.items():
        for f in forwards:
            optional = tuple("=" in p or p.startswith("*") for p in f.params[1:] if p not in ("*", "/"))
            surface.classes[name].members[f.name] = Member("coroutine", optional, f.returns)


def check_complete(surface: Surface) -> None:
    """Every public sync member has a same-named async member, or is in ``NO_TWIN``."""
    for twin, cls in surface.twins:
        members = surface.classes[twin.name].members
        for name, owner in public_members(cls).items():
            qualname = f"{owner.__name__}.{name}"
            if name not in members and qualname not in NO_TWIN and qualname not in surface.failed:
                surface.errors.append(
                    f"{qualname} has no async twin: write one in aio/{twin.module}.py "
                    f"(class {twin.name}), or list it in NO_TWIN in scripts/gen_async.py with its advice"
                )
                surface.failed.add(qualname)


# -- the advice map --------------------------------------------------------------------------------
def advice(surface: Surface) -> dict[str, str]:
    """Sync qualname -> async spelling, for every member of the sync classes and their bases.

    Keys are where a member is defined (``Core.purge_expired`` for ``store.purge_expired``), as the
    loop guard names the call; the first twin in ``TWINS`` that reaches a member names it.
    """
    spoken: dict[str, str] = {}
    for twin, _ in surface.twins:
        spoken.setdefault(twin.name, twin.spoken)
    out: dict[str, str] = {}
    for twin, cls in surface.twins:
        members = surface.classes[twin.name].members
        for owner, name in _defined(cls):
            key = f"{owner.__name__}.{name}"
            if key in out:
                continue
            if key in NO_TWIN:
                if (said := NO_TWIN[key]) is not None:
                    out[key] = said
            elif name in DUNDERS and DUNDERS[name].partition("(")[0] in members:
                out[key] = f"await {twin.spoken}.{DUNDERS[name]}"
            elif not name.startswith("_") and name in members:
                out[key] = spelling(twin, name, members[name], surface.classes, spoken)
    out.update(_context_managers(surface, out))
    return {**out, **EXTRA_ADVICE}


def _defined(cls: type) -> Iterator[tuple[type, str]]:
    """``(class, name)`` for what ``cls`` and each of its bases (but ``object``) defines."""
    return ((klass, name) for klass in cls.__mro__[:-1] for name in vars(klass))


def spelling(twin: Twin, name: str, m: Member, classes: dict[str, AsyncClass], spoken: dict[str, str]) -> str:
    """How async code writes ``<twin>.<name>``, from the kind of member the async class has."""
    call = f"{twin.spoken}.{name}"
    args = "(...)" if m.optional else "()"
    if m.kind == "coroutine":
        return f"await {call}{args}"
    if m.kind == "asyncgen":
        return f"async for {_loop_variable(name, m.returns)} in {call}{'()' if all(m.optional) else '(...)'}"
    if m.kind in ("property", "attribute"):
        return call
    made = classes.get(m.returns)
    if made is not None and m.returns != twin.name and "__aenter__" in made.members:
        return f"async with {call}{args} as {spoken[m.returns]}:"
    return f"{call}{args} (no await" + (")" if m.returns == "None" else "; await its methods)")


def _loop_variable(method: str, returns: str) -> str:
    """``-> AsyncIterator[Event]``: ``event``; ``keys() -> AsyncIterator[str]``: ``key``."""
    item = returns.partition("[")[2].rstrip("]")
    if item[:1].isupper() and item.isidentifier():
        return item.lower()
    return method[:-1] if method.endswith("s") else "item"


def _context_managers(surface: Surface, out: dict[str, str]) -> dict[str, str]:
    """``Run.__enter__`` (and ``__init__``, ``__exit__``): the ``async with`` that makes an AsyncRun."""
    made: dict[str, str] = {}
    for twin, cls in surface.twins:
        for name, m in surface.classes[twin.name].members.items():
            factory = out.get(f"{cls.__name__}.{name}", "")
            if m.kind != "function" or not factory.startswith("async with "):
                continue
            for other, product in surface.twins:
                if other.name == m.returns:
                    made.update({f"{owner.__name__}.{dunder}": factory for owner, dunder in _defined(product)
                                 if dunder in ("__init__", "__enter__", "__exit__")})
    return made


# -- main ----------------------------------------------------------------------------------------------
def generate() -> dict[Path, str]:
    """The text of each generated file, or :class:`SurfaceError` listing every problem."""
    twins = import_sync_api()
    surface = Surface(twins, read_async_classes({t.module for t, _ in twins}))
    resolver = Resolver()
    plan(surface, resolver)
    merge_generated(surface)
    check_complete(surface)
    if surface.errors:
        raise SurfaceError(*surface.errors)
    imports = {Import("statekeel.aio._worker", "Worker", "Worker")}
    mixins = []
    for twin, cls in twins:
        if twin.target is not None:
            forwards = surface.forwards[twin.name]
            imports |= {resolver.definition(cls.__module__, cls.__name__), *(i for f in forwards for i in f.imports)}
            if twin.target.endswith("()"):
                imports.add(Import("collections.abc", "Callable", "Callable"))
            mixins.append(render_mixin(twin, cls, forwards))
    _check_collisions(imports)
    names = [t.mixin for t, _ in twins if t.target is not None]
    return {FORWARDS: render_forwards(mixins, names, imports), ADVICE: render_advice(advice(surface))}


def _check_collisions(imports: set[Import]) -> None:
    seen: dict[str, Import] = {}
    for imp in sorted(imports, key=repr):
        if seen.setdefault(imp.local, imp) != imp:
            raise SurfaceError(f"sync modules bind {imp.local!r} differently ({seen[imp.local]}, {imp}): "
                               "rename one, or teach scripts/gen_async.py to alias")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate statekeel/aio/_generated*.py from the sync API.")
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated file is not current")
    check = parser.parse_args(argv).check
    try:
        texts = generate()
    except SurfaceError as exc:
        print("statekeel/aio cannot be generated:", *(f"  - {e}" for e in exc.args), sep="\n", file=sys.stderr)
        return 1
    stale = [path for path, text in texts.items() if not path.exists() or path.read_text() != text]
    for path in stale:
        if check:
            _show_diff(path, texts[path])
        else:
            path.write_text(texts[path])
            print(f"wrote {path.relative_to(ROOT)}")
    if not stale:
        print("statekeel/aio/_generated*.py are up to date")
    return 1 if check and stale else 0


def _show_diff(path: Path, text: str) -> None:
    shown = str(path.relative_to(ROOT))
    current = path.read_text().splitlines() if path.exists() else []
    diff = list(difflib.unified_diff(current, text.splitlines(), shown, "generated", lineterm=""))
    print(*diff[:60], *(["..."] if len(diff) > 60 else []), sep="\n", file=sys.stderr)
    print(f"{shown} is stale (the sync API or statekeel/aio changed): run `python scripts/gen_async.py`",
          file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
