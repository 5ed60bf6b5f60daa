"""The reliability suite (issue 10): run it with scripts/reliability.py; see docs/reliability.md."""
