"""Adapters that let other agent frameworks keep their state in statekeel.

The top layer of the package (beside the CLI): an integration may import the store,
the core and the features; nothing in statekeel imports an integration, so a
framework's package is needed only by whoever uses its adapter
(``pip install statekeel[langgraph]``).
"""
