"""A writing pipeline with a human in the loop, resumable days later.

    python examples/writing_pipeline.py
        # notes -> three drafts -> synthesis -> questions, then it stops, waiting:
        # "run 'essay' is waiting for 'answers' ..."
    statekeel runs resume essay --input '{"audience": "new engineers", "length": "short"}'
        # (or: python examples/writing_pipeline.py --answers '{...}')
    python examples/writing_pipeline.py
        # drafts and synthesis are reused, not recomputed; the final draft is written

The "model" here is a deterministic stand-in (``fake_model``) so the example
runs offline and its output can be tested; swap in a real client call.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from typing import Any

import statekeel

RAW_NOTES = """\
- agents crash; users should not notice
- write the decision down before acting
- steps: memoise results, resume at the first unfinished one
- humans answer questions hours or days later
"""
STYLES = ("concise", "narrative", "bulleted")


def fake_model(prompt: str, *, style: str = "plain") -> str:
    """A deterministic stand-in for a model call: same prompt, same text."""
    digest = hashlib.sha256(f"{style}:{prompt}".encode()).hexdigest()[:8]
    first = prompt.strip().splitlines()[0].lstrip("- ")
    return f"[{style} {digest}] {first[:60]}"


def load_notes() -> list[str]:
    return [line.lstrip("- ") for line in RAW_NOTES.splitlines() if line.strip()]


def write_draft(notes: list[str], style: str) -> str:
    return fake_model("\n".join(notes), style=style)


def synthesise(drafts: list[str]) -> str:
    return fake_model("\n".join(drafts), style="synthesis")


def questions_for(synthesis: str) -> list[str]:
    return ["Who is the audience?", "How long should it be?"]


def finalise(synthesis: str, answers: dict[str, Any]) -> str:
    brief = ", ".join(f"{k}={v}" for k, v in sorted(answers.items()))
    return f"FINAL for {brief}: {fake_model(synthesis, style='final')}"


def pipeline(run: statekeel.Run) -> str:
    notes = run.step("notes", load_notes)
    drafts = [run.step(f"draft-{style}", write_draft, notes, style) for style in STYLES]
    synthesis = run.step("synthesis", synthesise, drafts)
    questions = run.step("questions", questions_for, synthesis)
    answers = run.wait_for("answers", prompt=" ".join(questions))
    return run.step("final", finalise, synthesis, answers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("STATEKEEL_URL", statekeel.DEFAULT_URL))
    parser.add_argument("--run-id", default="essay")
    parser.add_argument("--answers", metavar="JSON", help="supply the human's answers, then continue")
    args = parser.parse_args()

    with statekeel.open(args.url) as store:
        if args.answers:
            store.resume_run(args.run_id, "answers", json.loads(args.answers))
        final = None
        with store.run(args.run_id) as run:
            final = pipeline(run)
        print(f"reused: {', '.join(run.reused) or 'none'}")
        print(f"ran: {', '.join(run.executed) or 'none'}")
        if run.suspended is not None:
            print(f"waiting: {run.suspended}")
            return 0  # a clean exit: the run is stored as "waiting"
        print(final)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
