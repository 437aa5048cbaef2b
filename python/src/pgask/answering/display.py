"""A rag.answer result as the command line prints it (`pgask ask`, `pgask demo`)."""

from __future__ import annotations


def print_answer(result: dict, mark=None) -> None:
    """The answer, its note, then its numbered sources; ``mark(citation)`` adds a word after a
    source (the demo says which cited pages are the question's gold pages)."""
    print(result["answer"])
    if result.get("note"):
        print(f"\n({result['note']})")
    if result["citations"]:
        print("\nSources:")
        for c in result["citations"]:
            start, end = c["span"]
            extra = f"  {mark(c)}" if mark else ""
            print(f"  [{c['n']}] {c['title']} ({c['source']}, characters {start}-{end}){extra}")
