"""The working set: what a new context window needs, assembled from durable state in a budget.

    ws = s.context(budget=4000)              # a WorkingSet
    ws.render()                              # the boot document, Markdown
    ws.to_messages()                         # [{"role": "system", ...}, recent messages...]
    ws.dropped                               # what was left out, and why

What goes in, in document order: the **standing orders** (app-scope state key
``standing_orders``: a str, a list of str, or a mapping of name -> order), the **user's
profile** (every key of the user's scope, ``store.user(u)``), the session's **open decisions**
(no outcome yet), **runs waiting for input** and what they ask, **memories** relevant to the
latest user message (``store.memory(("user", u)).search(...)`` when long-term memory exists,
or a search function), **summaries** of older history (``s.summarize``) and the **recent
messages**.

Priorities when the budget is short (each item is kept if it fits when its turn comes, or
reported in :attr:`WorkingSet.dropped` with its cost and the reason): standing orders, then
the newest message, the profile, open decisions, waiting runs, memories, then the
conversation — older messages newest first, each together with the summary covering what
precedes it, then older summaries (:mod:`statekeel.features.context_conversation`).

Cost: a few point reads and small scans (orders, profile, decisions, runs), one search per
memory namespace, the newest messages in pages only while they fit, and the summaries only
as far as needed: O(kept), flat in the length of the history. Reading writes nothing (the
decisions listing may tidy index pointers of closed decisions, as every listing does).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from ..core import Core, layout
from ..core.validate import check_int, check_name, check_text
from ..errors import InvalidInputError
from ..protocol import Record, keys
from .context_conversation import Budget, History, Summaries, fill_conversation, message_text, offer_latest
from .context_render import TokenCounter, Tokenizer, WorkingSet, as_text, message_role
from .decisions import list_decisions
from .run_admin import list_runs
from .run_records import RunInfo, _info

__all__ = ["MAX_BUDGET", "STANDING_ORDERS_KEY", "MemoryOption", "MemorySearch", "build_context"]

MAX_BUDGET: Final = 10_000_000
"""The largest budget accepted (tokens): more than any model's window, so a larger one is a mistake."""
STANDING_ORDERS_KEY: Final = "standing_orders"
"""The app-scope state key holding the standing orders."""
PROFILE_KEYS: Final = 100
WAITING_RUNS: Final = 20
OPEN_DECISIONS: Final = 50
TOKENS_PER_MESSAGE: Final = 32
"""A guess of a short chat message's cost: the first history read asks for ``budget // 32`` messages
(16 to 256), so a typical budget is filled in one or two round trips."""

MemorySearch = Callable[[str, int], Iterable[Any]]
"""``search(query, limit) -> hits`` best first; a hit has ``.text`` (and ``.score``), or is a str."""
MemoryOption = MemorySearch | Sequence[tuple[str, ...]] | tuple[str, ...] | bool | None
"""``memory=``: None/True (the user's namespace, when the store has long-term memory), False (none),
namespaces to search as well (tuples), or a search function."""


def build_context(
    core: Core, session_id: str, user: str | None, *, budget: int, tokenizer: Tokenizer | None,
    memory: MemoryOption, memories: int, query: str | None, runs: Sequence[str] | None, recent: int | None,
) -> WorkingSet:
    """The working set of session ``session_id`` (see the module doc)."""
    _check_budget(budget)
    check_int(memories, "memories (how many memories to include)")
    if recent is not None:
        check_int(recent, "recent (the most messages to include)", minimum=1)
    if query is not None:
        check_text(query, "query= (what memories are searched for)")
    run_ids = None if runs is None else _run_ids(runs)
    searches = _searches(core, user, memory)
    count = TokenCounter(tokenizer)
    title = f"# Working set: session {session_id}\n"
    plan = Budget(count, budget - count(title))
    if plan.left < 0:
        raise InvalidInputError(f"budget={budget} is below the document's title alone ({count(title)} tokens); "
                                "give a budget of a few hundred tokens at least")
    view, orders = core.backend.get_many([layout.session_view_key(session_id),
                                          layout.state_key("app", "_", STANDING_ORDERS_KEY)])  # one round trip
    history = History(core, session_id, first_page=budget // TOKENS_PER_MESSAGE, view=view)
    _standing_orders(core, orders, plan)
    latest_kept = offer_latest(plan, history)
    _profile(core, user, plan)
    _decisions(core, session_id, plan)
    _runs(core, run_ids, plan)
    _memories(searches, memories, query if query is not None else _latest_user_text(history), plan)
    fill_conversation(plan, history, Summaries(core, session_id, history), recent, latest_kept)
    return WorkingSet(session_id, budget, budget - plan.left, count.name, title, plan.items(), tuple(plan.dropped))


def _check_budget(budget: Any) -> None:
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise InvalidInputError(f"budget must be an int number of tokens (e.g. 4000), got {type(budget).__name__}")
    if not 1 <= budget <= MAX_BUDGET:
        raise InvalidInputError(f"budget must be from 1 to {MAX_BUDGET:,} tokens, got {budget:,}")


def _run_ids(runs: Any) -> list[str]:
    if isinstance(runs, str) or not isinstance(runs, Iterable):
        raise InvalidInputError(f"runs= takes run ids (a list of str) or None for every waiting run, got {runs!r}")
    return [check_name(r, "a run id in runs=") for r in runs]


# -- the fixed sections ------------------------------------------------------------------------
def _standing_orders(core: Core, rec: Record | None, plan: Budget) -> None:
    if rec is None:
        return
    orders = core.codec.decode(rec.data, rec.codec, rec.key)
    if isinstance(orders, Mapping):
        entries = [(str(k), f"**{k}**: {as_text(v)}") for k, v in orders.items()]
    elif isinstance(orders, (list, tuple)):
        entries = [(f"{STANDING_ORDERS_KEY}[{n}]", as_text(v)) for n, v in enumerate(orders)]
    else:
        entries = [(STANDING_ORDERS_KEY, as_text(orders))]
    for name, text in entries:
        plan.offer("standing_orders", name, text)


def _profile(core: Core, user: str | None, plan: Budget) -> None:
    if user is None:
        return
    prefix = layout.scope_state_prefix("user", user)
    recs = core.backend.scan(prefix, limit=PROFILE_KEYS + 1)
    for rec in recs[:PROFILE_KEYS]:
        key, value = keys.unescape(rec.key[len(prefix):]), core.codec.decode(rec.data, rec.codec, rec.key)
        plan.offer("profile", key, f"**{key}**: {as_text(value)}", value)
    if len(recs) > PROFILE_KEYS:
        plan.drop("profile", f"keys after {keys.unescape(recs[PROFILE_KEYS - 1].key[len(prefix):])!r}", None,
                  f"a profile shows at most {PROFILE_KEYS} keys; keep what the model needs in fewer")


def _decisions(core: Core, session_id: str, plan: Budget) -> None:
    found, more = list_decisions(core, incomplete=True, session=session_id, after=None, limit=OPEN_DECISIONS)
    for d in found:
        why = f" — rationale: {d.rationale}" if d.rationale else ""
        action = "" if d.action is None else f"; action: {as_text(d.action)}"
        text = f"{d.decision}{why}{action} (recorded {d.created_at:%Y-%m-%d %H:%M} UTC, id `{d.id}`)"
        plan.offer("decisions", d.id, text, d)
    if more is not None:
        plan.drop("decisions", f"open decisions after {more}", None, f"at most {OPEN_DECISIONS} are shown")


def _runs(core: Core, run_ids: list[str] | None, plan: Budget) -> None:
    if run_ids is None:
        waiting, more = list_runs(core, status="waiting", after=None, limit=WAITING_RUNS)
        if more is not None:
            plan.drop("runs", f"waiting runs after {more!r}", None, f"at most {WAITING_RUNS} are shown; pass runs=")
    else:
        metas = core.backend.get_many([layout.run_meta_key(r) for r in run_ids])
        named = [_info(core, r, m, []) for r, m in zip(run_ids, metas) if m is not None]
        waiting = [i for i in named if i.status == "waiting"]
    for run in waiting:
        plan.offer("runs", run.id, _run_text(run), run)


def _run_text(run: RunInfo) -> str:
    asks = f": {run.prompt}" if run.prompt else ""
    return (f"run `{run.id}` waits for `{run.waiting_for}`{asks} (since {run.updated_at:%Y-%m-%d %H:%M} UTC; "
            f"store.resume_run({run.id!r}, {run.waiting_for!r}, value) resumes it)")


# -- memories ------------------------------------------------------------------------------------
def _searches(core: Core, user: str | None, memory: Any) -> list[MemorySearch]:
    """The search functions ``memory=`` asks for (checked before anything is read)."""
    if memory is False:
        return []
    if callable(memory):
        if inspect.iscoroutinefunction(memory):
            raise InvalidInputError("memory= got an async function; pass a plain search(query, limit) function")
        return [memory]
    extra = [] if memory is None or memory is True else _namespaces(memory)
    spaces = ([("user", user)] if user is not None else []) + extra
    factory = getattr(core, "memory", None)  # the Store's long-term memory, where the store has it
    if not callable(factory):
        if extra:
            raise InvalidInputError("this store has no long-term memory (store.memory) to search namespaces in; "
                                    "pass memory=<a search(query, limit) function> or memory=False")
        return []
    return [_namespace_search(factory, ns) for ns in dict.fromkeys(spaces)]


def _namespace_search(factory: Callable[[tuple[str, ...]], Any], namespace: tuple[str, ...]) -> MemorySearch:
    """``store.memory(namespace).search(query, limit=k)`` (statekeel.features.memory's contract)."""

    def search(query: str, limit: int) -> Iterable[Any]:
        found: Iterable[Any] = factory(namespace).search(query, limit=limit)
        return found

    return search


def _namespaces(memory: Any) -> list[tuple[str, ...]]:
    if isinstance(memory, tuple) and memory and all(isinstance(p, str) for p in memory):
        return [memory]
    if isinstance(memory, (list, tuple)) and all(isinstance(n, tuple) and n for n in memory):
        return [tuple(check_name(p, "a namespace label") for p in n) for n in memory]
    raise InvalidInputError(
        f"memory= takes a namespace tuple like ('user', 'u-7'), a list of them, a search(query, limit) "
        f"function, or False; got {memory!r}"
    )


def _latest_user_text(history: History) -> str | None:
    """What memories are searched for: the newest user message among the newest few."""
    first = None
    for n, message in enumerate(history):
        value = message.value
        if isinstance(value, Mapping) and message_role(value) == "user":
            content = value.get("content")
            return as_text(content if content is not None else value)
        first = first or message_text(message)
        if n >= 15:
            break
    return first


def _memories(searches: list[MemorySearch], limit: int, query: str | None, plan: Budget) -> None:
    if not searches or not query or limit == 0:
        return
    hits: list[tuple[float, str, Any]] = []
    for search in searches:
        found = search(query, limit)
        if inspect.isawaitable(found):
            raise InvalidInputError("the memory search returned an awaitable; pass a plain (sync) search function")
        hits += [_hit(h) for h in found]
    seen: set[str] = set()
    for score, text, hit in sorted(hits, key=lambda h: -h[0]):  # stable: unscored hits keep their order
        if len(seen) == limit:
            break
        if text not in seen:
            seen.add(text)
            scored = f" (score {score:.2f})" if score > float("-inf") else ""
            plan.offer("memories", _hit_name(hit, text), text + scored, hit)


def _hit(hit: Any) -> tuple[float, str, Any]:
    text = hit if isinstance(hit, str) else _field(hit, "text")
    if not isinstance(text, str):
        raise InvalidInputError(f"a memory hit needs a str .text, got {type(hit).__name__} {hit!r:.80}")
    score = _field(hit, "score")
    return (float(score) if isinstance(score, (int, float)) else float("-inf")), text, hit


def _field(hit: Any, name: str) -> Any:
    """A hit's ``text``/``score``/``key``: an attribute, or a key of a mapping (None for a plain str)."""
    if isinstance(hit, str):
        return None
    return hit.get(name) if isinstance(hit, Mapping) else getattr(hit, name, None)


def _hit_name(hit: Any, text: str) -> str:
    key = _field(hit, "key")
    return str(key) if key is not None else text[:40]
