"""Reading the LLM's query rewrites (rag.answer options hyde and multi_step)."""

from pgask.answering.rewriting import (
    DECOMPOSE_SYSTEM,
    MAX_PARTS,
    decompose_messages,
    hyde_messages,
    parse_parts,
    union,
)


def test_messages_put_the_question_alone_in_the_user_turn():
    assert hyde_messages("q?")[1] == {"role": "user", "content": "q?"}
    assert decompose_messages("q?") == [{"role": "system", "content": DECOMPOSE_SYSTEM},
                                        {"role": "user", "content": "q?"}]


def test_parts_are_lines_without_list_marks_or_repeats():
    reply = "1. How is X set?\n2) How is Y set?\n- How is X set?\n\n* ok\nQ3: Why Z?"
    assert parse_parts(reply, "How are X and Y set?") == [
        "How is X set?", "How is Y set?", "Why Z?"]


def test_parts_on_one_line_are_split_after_question_marks():
    assert parse_parts("What is A? What is B?", "A and B?") == ["What is A?", "What is B?"]


def test_the_question_itself_and_extra_parts_are_dropped():
    assert parse_parts("A and B?", "A and B?") == []
    many = "\n".join(f"Part {i}?" for i in range(10))
    assert len(parse_parts(many, "q")) == MAX_PARTS


def test_union_is_round_robin_without_repeats():
    a = [{"chunk_id": 1}, {"chunk_id": 2}, {"chunk_id": 3}]
    b = [{"chunk_id": 4}, {"chunk_id": 1}]
    assert [r["chunk_id"] for r in union([a, b], 10)] == [1, 4, 2, 3]
    assert [r["chunk_id"] for r in union([a, b], 2)] == [1, 4]
    assert union([], 5) == []
