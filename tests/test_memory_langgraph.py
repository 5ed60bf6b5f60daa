"""LangGraph's store ``index=`` on statekeel memory: semantic (hybrid) search with scores.

``StatekeelStore(core, index={"dims", "embed", "fields"})`` writes each item's text at
``fields`` to statekeel memory and ranks ``search(..., query=...)`` there
(``integrations/langgraph/memory_index.py``). The embedder is a deterministic function, as
LangGraph accepts one (``embed=callable``).
"""

from __future__ import annotations

import statekeel
from statekeel.integrations.langgraph import StatekeelStore
from test_memory import Words


def test_semantic_search_ranks_items_with_scores(store: statekeel.Store) -> None:
    lg = StatekeelStore(store, index={"dims": 32, "embed": Words().embed, "fields": ["text"]})
    ns = ("user", "u-7")
    lg.put(ns, "home", {"text": "the user lives in Lyon", "kind": "fact"})
    lg.put(ns, "diet", {"text": "the user is vegetarian", "kind": "pref"})
    lg.put(ns, "secret", {"text": "the user lives alone"}, index=False)  # stored, never searched
    lg.put(("user", "u-8"), "home", {"text": "another user lives in Oslo", "kind": "fact"})
    hits = lg.search(ns, query="where does the user live")
    assert [h.key for h in hits][:1] == ["home"] and hits[0].score is not None and hits[0].value["kind"] == "fact"
    assert "secret" not in [h.key for h in hits]
    assert [(h.namespace, h.key) for h in lg.search(("user",), query="lives", filter={"kind": "fact"})] in (
        [(("user", "u-7"), "home"), (("user", "u-8"), "home")], [(("user", "u-8"), "home"), (("user", "u-7"), "home")])
    lg.delete(ns, "home")
    assert "home" not in [h.key for h in lg.search(ns, query="lives")]
    assert {h.key for h in lg.search(ns)} == {"diet", "secret"}  # no query: LangGraph's listing, unscored
