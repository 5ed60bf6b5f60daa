"""Issue 16, the working set: ``s.context()``, ``s.summarize()`` and ``statekeel context``, on every backend."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner

import statekeel
from statekeel import Encryption, InvalidInputError, RunSuspended, Store
from statekeel.cli import main
from statekeel.core import Core
from statekeel.features.context import build_context
from statekeel.features.context_render import SECTIONS
from statekeel.protocol import Backend


def approx(text: str) -> int:
    return math.ceil(len(text) / 4)


class WordTokenizer:
    """A real (if simple) tokenizer object: words and punctuation marks, as tiktoken-style ids."""

    name = "words"

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}

    def encode(self, text: str) -> list[int]:
        return [self.vocab.setdefault(t, len(self.vocab)) for t in re.findall(r"\w+|[^\w\s]", text)]


@dataclass
class Hit:
    text: str
    score: float
    key: str


class ListMemory:
    """A deterministic search over a list: score = shared words / query words."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.queries: list[str] = []

    def __call__(self, query: str, limit: int) -> list[Hit]:
        self.queries.append(query)
        words = set(query.lower().split())
        scored = [(len(words & set(t.lower().split())) / max(len(words), 1), t) for t in self.texts]
        ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: -s[0])[:limit]
        return [Hit(t, s, f"m{self.texts.index(t)}") for s, t in ranked]


def chat(n: int, start: int = 1) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 else "assistant", "content": f"message {i} about the order"}
            for i in range(start, start + n)]


def fill(s: statekeel.Session, n: int, batch: int = 2000) -> None:
    for first in range(1, n + 1, batch):
        s.append(*chat(min(batch, n - first + 1), first))


def first_words(messages: list[Any]) -> str:
    return f"{len(messages)} messages from {messages[0]['content']!r} to {messages[-1]['content']!r}"


@pytest.fixture
def agent(store: Store) -> statekeel.Session:
    """A session with something in every section."""
    store.app.put("standing_orders", ["Answer in French.", "Never refund more than 100 EUR."])
    store.user("u-7").put("name", "Ada")
    store.user("u-7").put("plan", "pro")
    s = store.session("support-42", user="u-7")
    fill(s, 60)
    s.append({"role": "user", "content": "where is my order 991"})
    with store.run("report-1") as run:
        run.wait_for("approve", prompt="Publish the report?")
    assert run.suspended is not None
    return s


def open_decision(s: statekeel.Session, what: str) -> str:
    d = s.decide(what, rationale="late > 7 days", action={"refund": 991})
    d.__enter__()  # left open: the process "crashed" inside the block
    return d.id


# -- what goes in, and in which order -----------------------------------------------------------
def test_every_section_in_document_order(agent: statekeel.Session) -> None:
    decision = open_decision(agent, "refund order 991")
    with agent.decide("closed one"):
        pass
    memory = ListMemory(["likes short answers", "order 991 shipped late", "unrelated fact"])
    ws = agent.context(budget=2000, memory=memory)
    sections = [i.section for i in ws.items]
    assert sections == sorted(sections, key=[n for n, _ in SECTIONS].index)
    assert set(sections) == {"standing_orders", "profile", "decisions", "runs", "memories", "messages"}
    assert [i.text for i in ws.section("standing_orders")] == ["Answer in French.", "Never refund more than 100 EUR."]
    assert [i.name for i in ws.section("profile")] == ["name", "plan"]
    assert [i.name for i in ws.section("decisions")] == [decision]  # the closed one is not open
    assert [i.name for i in ws.section("runs")] == ["report-1"]
    assert "Publish the report?" in ws.section("runs")[0].text
    assert memory.queries == ["where is my order 991"]  # the latest user message
    assert [i.value.text for i in ws.section("memories")] == ["order 991 shipped late"]
    seqs = [m.value["content"] for m in ws.section("messages")]
    assert seqs[-1] == "where is my order 991" and seqs[0] == "message 1 about the order"  # oldest first
    md = ws.render()
    positions = [md.index(f"## {title}") for name, title in SECTIONS if name not in ("summaries",)]
    assert positions == sorted(positions)
    chat_messages = ws.to_messages()
    assert chat_messages[0]["role"] == "system" and "Answer in French." in chat_messages[0]["content"]
    assert "## Recent messages" not in chat_messages[0]["content"]
    assert chat_messages[-1] == {"role": "user", "content": "where is my order 991"}
    assert len(chat_messages) == 1 + len(ws.section("messages"))
    assert ws.dropped == ()


def test_a_session_without_anything_is_just_a_title(store: Store) -> None:
    ws = store.session("empty").context()
    assert ws.items == () and ws.dropped == ()
    assert ws.render() == "# Working set: session empty\n"
    assert ws.to_messages() == [{"role": "system", "content": "# Working set: session empty\n"}]


def test_runs_filter_and_other_values(store: Store) -> None:
    for rid in ("a", "b"):
        with store.run(rid) as run:
            run.wait_for("input", prompt=f"value for {rid}?")
    s = store.session("s")
    s.append("a plain string", {"role": "assistant", "content": None, "tool_calls": [{"id": "t1"}]})
    ws = s.context(runs=["b", "missing"])
    assert [i.name for i in ws.section("runs")] == ["b"]
    assert [i.text for i in ws.section("messages")] == [
        "**message** (#1): a plain string", '**assistant** (#2): {"tool_calls": [{"id": "t1"}]}']
    assert ws.to_messages()[1:] == [{"role": "user", "content": "a plain string"},
                                    {"role": "assistant", "content": None, "tool_calls": [{"id": "t1"}]}]
    assert s.context(runs=[]).section("runs") == []


# -- the budget ---------------------------------------------------------------------------------
def test_budget_is_respected_with_the_approximation(agent: statekeel.Session) -> None:
    open_decision(agent, "refund order 991")
    for budget in (40, 120, 300, 1000):
        ws = agent.context(budget=budget, memory=ListMemory(["order 991 shipped late"]))
        assert ws.tokenizer.startswith("approx")
        assert ws.tokens <= budget and approx(ws.render()) <= budget
        assert ws.tokens == approx(ws.title) + sum(i.tokens for i in ws.items)


def test_budget_is_respected_with_a_tokenizer(agent: statekeel.Session) -> None:
    tokenizer = WordTokenizer()
    for budget in (40, 150, 400):
        ws = agent.context(budget=budget, tokenizer=tokenizer)
        assert ws.tokenizer.endswith("WordTokenizer words")
        assert ws.tokens <= budget and len(tokenizer.encode(ws.render())) <= budget
        assert ws.tokens == len(tokenizer.encode(ws.title)) + sum(i.tokens for i in ws.items)
        assert [i.tokens for i in ws.items] != [approx(f"- {i.text}\n") for i in ws.items]  # counted, not estimated


class SpecialRefusing(WordTokenizer):
    """As tiktoken: ``encode`` refuses text that looks like a special token, ``encode_ordinary`` does not."""

    def encode(self, text: str) -> list[int]:
        raise ValueError("Encountered text corresponding to disallowed special token '<|endoftext|>'")

    def encode_ordinary(self, text: str) -> list[int]:
        return super().encode(text)


def test_a_tiktoken_like_tokenizer_counts_special_token_text(store: Store) -> None:
    s = store.session("s")
    s.append({"role": "user", "content": "what does <|endoftext|> mean?"})
    ws = s.context(budget=100, tokenizer=SpecialRefusing())
    assert [i.name for i in ws.section("messages")] == ["#1"] and ws.tokens <= 100


def test_dropped_report_names_section_item_tokens_and_reason(agent: statekeel.Session, store: Store) -> None:
    store.user("u-7").put("biography", "word " * 400)
    ws = agent.context(budget=200)
    dropped = {(d.section, d.item): d for d in ws.dropped}
    bio = dropped[("profile", "biography")]
    assert bio.tokens is not None and bio.tokens > 400 and "needs" in bio.reason and "left" in bio.reason
    gap = [d for d in ws.dropped if d.section == "messages"]
    assert len(gap) == 1 and gap[0].item.startswith("#1-#") and "s.summarize(upto=" in gap[0].reason
    kept = {i.name for i in ws.items}
    assert "#61" in kept and "name" in kept  # the newest message and the small profile keys stay


def test_the_newest_message_comes_before_the_profile(agent: statekeel.Session, store: Store) -> None:
    store.user("u-7").put("biography", "word " * 100)
    ws = agent.context(budget=70)
    assert [i.name for i in ws.section("messages")][-1] == "#61"
    assert ("profile", "biography") in {(d.section, d.item) for d in ws.dropped}


def test_recent_caps_the_messages(agent: statekeel.Session) -> None:
    ws = agent.context(budget=4000, recent=5)
    assert [i.name for i in ws.section("messages")] == ["#57", "#58", "#59", "#60", "#61"]
    assert [(d.item, d.reason[:15]) for d in ws.dropped] == [("#1-#56", "beyond recent=5")]


# -- summaries ------------------------------------------------------------------------------------
def test_summaries_are_preferred_to_dropping(store: Store) -> None:
    s = store.session("long")
    fill(s, 300)
    assert s.summarize(upto=100, fn=first_words).start == 1
    second = s.summarize(upto=290, fn=first_words)
    assert (second.start, second.upto, second.count, second.by) == (101, 290, 190, "first_words")
    ws = s.context(budget=300)
    lost = [d for d in ws.dropped if d.section == "messages" and not d.reason.startswith("a shown summary covers")]
    assert lost == []  # nothing older is simply lost: messages #1-#100 are there as their summary
    summaries = ws.section("summaries")
    assert [i.name for i in summaries] == ["#1-#100", "#101-#290"]
    assert summaries[0].text == "messages #1-#100 (100): 100 messages from 'message 1 about the order' to " \
                                "'message 100 about the order'"
    shown = [int(i.name[1:]) for i in ws.section("messages")]
    assert shown == list(range(shown[0], 301)) and 250 < shown[0] <= 291  # contiguous, up to the newest
    s2 = store.session("long-unsummarised")
    fill(s2, 300)
    without = s2.context(budget=300)
    first = int(without.section("messages")[0].name[1:])
    assert [d.item for d in without.dropped if d.section == "messages"] == [f"#1-#{first - 1}"]


def test_older_summaries_drop_first_and_are_reported(store: Store) -> None:
    s = store.session("many")
    fill(s, 200)
    for upto in range(20, 201, 20):
        s.summarize(upto=upto, fn=lambda ms: "x" * 200)
    ws = s.context(budget=250)
    names = [i.name for i in ws.section("summaries")]
    assert names == [f"#{u - 19}-#{u}" for u in range(220 - 20 * len(names), 201, 20)]  # the newest ones
    messages = sum(i.tokens for i in ws.section("messages"))
    assert messages >= sum(i.tokens for i in ws.section("summaries"))  # messages keep at least half
    oldest = int(names[0].split("-")[0][1:])
    assert ws.dropped[-2].item == f"#{oldest - 20}-#{oldest - 1}" and ws.dropped[-2].tokens is not None
    assert ws.dropped[-1].item == f"summaries ending before #{oldest - 20}" and ws.dropped[-1].tokens is None
    assert "not read" in ws.dropped[-1].reason
    assert ws.tokens <= 250


def test_summarize_ranges_and_bad_input(store: Store) -> None:
    s = store.session("s")
    with pytest.raises(InvalidInputError, match="no history"):
        s.summarize(fn=first_words)
    fill(s, 10)
    assert (s.summarize(upto=4, fn=first_words).start, s.summarize(fn=first_words).start) == (1, 5)
    with pytest.raises(InvalidInputError, match="already summarised"):
        s.summarize(fn=first_words)
    with pytest.raises(InvalidInputError, match="past the newest"):
        s.summarize(upto=11, fn=first_words)
    for bad in (0, -1, True, "3", 2.0):
        with pytest.raises(InvalidInputError):
            s.summarize(upto=bad, fn=first_words)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="must return a str"):
        s.summarize(upto=10, start=1, fn=lambda ms: len(ms))  # type: ignore[arg-type, return-value]

    async def summarise_async(ms: list[Any]) -> str:
        return "never"

    with pytest.raises(InvalidInputError, match="async function"):
        s.summarize(upto=10, start=1, fn=summarise_async)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="fn= must be a function"):
        s.summarize(upto=10, start=1, fn="summary")  # type: ignore[arg-type]

    def boom(ms: list[Any]) -> str:
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError, match="model down"):
        s.summarize(upto=10, start=1, fn=boom)
    again = s.summarize(upto=10, start=1, fn=lambda ms: "all ten")  # a range summarised again: replaced
    ws = s.context(budget=10_000)
    assert [i.name for i in ws.section("messages")][0] == "#1"  # everything fits: no summary needed
    ws = s.context(budget=60)
    assert [i.value for i in ws.section("summaries")] == [again]


def test_summaries_outlive_trimmed_history(store: Store) -> None:
    s = store.session("s")
    fill(s, 60)
    s.summarize(upto=50, fn=lambda ms: f"{len(ms)} messages")
    s.trim(keep_last=5)
    ws = s.context(budget=200)
    assert [i.name for i in ws.section("summaries")] == ["#1-#50"]
    assert [i.name for i in ws.section("messages")] == ["#56", "#57", "#58", "#59", "#60"]
    assert ws.dropped == ()


def test_clear_drops_the_summaries_with_the_history(store: Store) -> None:
    s = store.session("s")
    fill(s, 30)
    s.summarize(upto=20, fn=lambda ms: "what was said before the clear")
    s.clear()
    s.append({"role": "user", "content": "a fresh start"})
    ws = s.context(budget=200)
    assert ws.section("summaries") == [] and "before the clear" not in ws.render()
    assert [i.name for i in ws.section("messages")] == ["#31"]


def test_a_summary_of_messages_a_restore_hid_is_not_shown(store: Store) -> None:
    s = store.session("s")
    fill(s, 40)
    cp = s.checkpoint("mid")
    s.append(*chat(20, 41))
    s.summarize(upto=50, fn=lambda ms: "what was said after the checkpoint")
    s.restore(cp)  # hides 41..60: the summary tells of hidden messages
    s.append({"role": "user", "content": "after the restore"})
    ws = s.context(budget=80)
    assert ws.section("summaries") == []
    assert "after the checkpoint" not in ws.render() and "after the restore" in ws.render()
    assert not [i.name for i in ws.section("messages") if 41 <= int(i.name[1:]) <= 60]


# -- memories -------------------------------------------------------------------------------------
def test_memories_search_the_latest_user_message(agent: statekeel.Session) -> None:
    memory = ListMemory(["order 991 shipped late", "the order was paid", "where to park", "my order 991 is lost"])
    ws = agent.context(memory=memory, memories=2)
    assert [i.value.key for i in ws.section("memories")] == ["m3", "m0"]
    assert ws.section("memories")[0].text == "my order 991 is lost (score 0.80)"
    assert agent.context(memory=memory, query="park").section("memories")[0].value.text == "where to park"
    assert agent.context(memory=memory, memories=0).section("memories") == []
    assert agent.context(memory=False).section("memories") == []
    plain = agent.context(memory=lambda q, k: ["a plain memory", "a plain memory"])
    assert [i.text for i in plain.section("memories")] == ["a plain memory"]


def test_memories_through_the_store_s_long_term_memory(agent: statekeel.Session, store: Store) -> None:
    store.memory(("user", "u-7")).put("f1", "order 991 shipped late")
    store.memory(("team",)).put("f2", "order 991 is handled by Bo")
    mine = agent.context()
    assert [i.value.text for i in mine.section("memories")] == ["order 991 shipped late"]
    both = agent.context(memory=[("team",)])
    texts = {i.value.text for i in both.section("memories")}
    assert texts == {"order 991 shipped late", "order 991 is handled by Bo"}


# -- storage: encrypted, read-bounded -------------------------------------------------------------
def test_encrypted_store(store_url: str) -> None:
    key = base64.b64encode(b"K" * 32).decode()
    with statekeel.open(store_url, encryption=Encryption(master_key=key)) as store:
        store.app.put("standing_orders", "secret orders")
        s = store.session("enc", user="u-1")
        fill(s, 30)
        s.summarize(upto=20, fn=lambda ms: "summary text that must not be in clear")
        raw = b"".join(r.data for r in store.storage.scan("", limit=10_000))
        assert b"must not be in clear" not in raw
        ws = s.context(budget=120)
        assert "summary text that must not be in clear" in ws.render() and "secret orders" in ws.render()
    if not store_url.startswith("memory"):
        with pytest.raises(statekeel.KeyUnavailableError):
            statekeel.open(store_url)


class CountingBackend:
    """A real backend, with the entries and records each read returns counted."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner
        self.returned: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, log: str, **kw: Any) -> Any:
        out = self._inner.read(log, **kw)
        self.returned["entries"] += len(out)
        return out

    def read_values(self, log: str, **kw: Any) -> Any:
        out = self._inner.read_values(log, **kw)
        self.returned["entries"] += len(out)
        return out

    def scan(self, prefix: str, **kw: Any) -> Any:
        out = self._inner.scan(prefix, **kw)
        self.returned["records"] += len(out)
        return out

    def get_many(self, keys: Sequence[str]) -> Any:
        self.returned["records"] += len(keys)
        return self._inner.get_many(keys)


def reads_of_context(store: Store, session_id: str, **kw: Any) -> Counter[str]:
    inner = store.backend
    counting = CountingBackend(inner)
    store.backend = counting  # type: ignore[assignment]
    try:
        found = store.find_session(session_id)
        assert found is not None
        found.context(**kw)
    finally:
        store.backend = inner
    return counting.returned


def test_a_100k_message_history_is_not_read(store: Store) -> None:
    for sid, n in (("short", 1_000), ("long", 100_000)):
        s = store.session(sid)
        fill(s, n, batch=5_000)
        s.summarize(upto=n // 2, fn=lambda ms: f"{len(ms)} messages")
    short = reads_of_context(store, "short", budget=2000)
    long = reads_of_context(store, "long", budget=2000)
    assert long == short  # flat in history length
    kept = len(store.session("long").context(budget=2000).section("messages"))
    assert 100 < kept < long["entries"] <= 16 + 32 + 64 + 128  # the pages holding what 2,000 tokens keep


# -- bad input ----------------------------------------------------------------------------------
BAD_INPUT: list[dict[str, Any]] = [
    {"budget": 0}, {"budget": -5}, {"budget": "4000"}, {"budget": 4000.0}, {"budget": True}, {"budget": None},
    {"budget": 10**12}, {"budget": 2**70}, {"recent": 0}, {"recent": "5"}, {"memories": -1}, {"query": 5},
    {"tokenizer": object()}, {"tokenizer": "cl100k_base"}, {"memory": "user"}, {"memory": [("",)]},
    {"memory": [["user", "u"]]}, {"runs": "report-1"}, {"runs": [""]}, {"budget": 3},
]


def test_bad_input_is_a_typed_error_and_writes_nothing(agent: statekeel.Session, store: Store) -> None:
    before = sorted((r.key, r.version) for r in store.storage.scan("", limit=10_000))
    for kw in BAD_INPUT:
        with pytest.raises(InvalidInputError):
            agent.context(**kw)
    assert sorted((r.key, r.version) for r in store.storage.scan("", limit=10_000)) == before


def test_a_broken_tokenizer_or_search_is_named(agent: statekeel.Session) -> None:
    class Bad:
        def encode(self, text: str) -> int:
            return 3

    with pytest.raises(InvalidInputError, match="list of tokens"):
        agent.context(tokenizer=Bad())  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="memory hit"):
        agent.context(memory=lambda q, k: [42])

    async def search(q: str, k: int) -> list[str]:
        return []

    with pytest.raises(InvalidInputError, match="async"):
        agent.context(memory=search)  # type: ignore[arg-type]


def test_no_long_term_memory_is_named(store: Store) -> None:
    store.session("s", user="u").append({"role": "user", "content": "hi"})
    core = Core(store.backend, store.codec)  # a core without long-term memory (what features see)
    kw: dict[str, Any] = {"budget": 100, "tokenizer": None, "memories": 5, "query": None, "runs": None,
                          "recent": None}
    assert build_context(core, "s", "u", memory=None, **kw).section("messages")  # the default: no memories
    with pytest.raises(InvalidInputError, match="no long-term memory"):
        build_context(core, "s", "u", memory=[("team",)], **kw)


# -- async twin, CLI ------------------------------------------------------------------------------
@pytest.mark.multiprocess  # a second handle on the store: not the in-process memory backend
def test_async_twin(store_url: str) -> None:
    async def main_() -> statekeel.WorkingSet:
        async with await statekeel.open_async(store_url) as astore:
            s = await astore.session("a")
            await s.append(*chat(30))
            summary = await s.summarize(upto=20, fn=lambda ms: "twenty")
            assert summary.upto == 20
            return await s.context(budget=60)

    ws = asyncio.run(main_())
    assert [i.text for i in ws.section("summaries")] == ["messages #1-#20 (20): twenty"]


@pytest.mark.multiprocess
def test_cli_prints_the_boot_document(agent: statekeel.Session, store_url: str) -> None:
    agent.summarize(upto=40, fn=lambda ms: "forty messages about orders")
    runner = CliRunner()
    done = runner.invoke(main, ["context", "support-42", store_url, "--budget", "300"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("# Working set: session support-42\n")
    assert "## Standing orders" in done.stdout and "forty messages about orders" in done.stdout
    assert approx(done.stdout) <= 300
    assert re.search(r"^\d+ of 300 tokens", done.stderr, re.M)
    doc = json.loads(runner.invoke(main, ["--url", store_url, "context", "support-42", "--json"]).stdout)
    assert doc["budget"] == 4000 and doc["markdown"].startswith("# Working set") and doc["dropped"] == []
    assert {i["section"] for i in doc["items"]} == {"standing_orders", "profile", "runs", "messages"}  # all fit
    bad = runner.invoke(main, ["--url", store_url, "context", "support-42", "--budget", "0"])
    assert bad.exit_code == 1 and "budget must be from 1" in bad.output
    missing = runner.invoke(main, ["--url", store_url, "context", "nope"])
    assert missing.exit_code == 1 and "no session 'nope'" in missing.output
