"""The benchmark's pure helpers (no database, no timings)."""

import numpy as np
import pytest

from pgask_measure.bench import (
    QUESTION_TEMPLATES,
    Figure,
    Report,
    latency_figures,
    percentile,
    questions,
    random_unit_vectors,
    recall_at_k,
    size_label,
)


def test_percentile_interpolates_between_ranks():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 3.0
    assert percentile(values, 100) == 5.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0


def test_percentile_agrees_with_numpy():
    values = list(np.random.default_rng(1).exponential(size=201))
    for p in (50, 90, 95, 99):
        assert percentile(values, p) == pytest.approx(float(np.percentile(values, p)))


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_recall_counts_true_neighbours_found():
    exact = [0.1, 0.2, 0.3, 0.4]
    assert recall_at_k([0.1, 0.2, 0.3, 0.4], exact, 4) == 1.0
    # The index missed 0.2 and 0.4 and returned farther rows instead.
    assert recall_at_k([0.1, 0.3, 0.5, 0.6], exact, 4) == 0.5
    assert recall_at_k([0.1, 0.2], exact, 2) == 1.0


def test_recall_does_not_penalise_ties():
    # Duplicate chunks: another row at the k-th distance is as good a neighbour.
    assert recall_at_k([0.1, 0.2, 0.2], [0.1, 0.2, 0.2], 3) == 1.0
    assert recall_at_k([0.1, 0.2 + 1e-9], [0.1, 0.2], 2) == 1.0


def test_recall_with_fewer_rows_than_k():
    assert recall_at_k([0.1, 0.2], [0.1, 0.2], 10) == 1.0
    assert recall_at_k([], [], 10) == 1.0
    with pytest.raises(ValueError):
        recall_at_k([0.1], [0.1], 0)


def test_questions_are_distinct_and_cover_every_title_first():
    titles = ["ABORT", "ALTER TABLE", "VACUUM"]
    asked = questions(titles, 100)
    assert len(asked) == len(set(asked)) == len(titles) * len(QUESTION_TEMPLATES)
    assert all(title in q for title, q in zip(titles, asked[:3], strict=True))
    assert questions(titles, 2) == asked[:2]


def test_size_labels():
    assert size_label(10_000) == "10k"
    assert size_label(100_000) == "100k"
    assert size_label(1_000_000) == "1M"
    assert size_label(2_500) == "2.5k"
    assert size_label(190) == "190"


def test_random_unit_vectors_are_normalised():
    vectors = random_unit_vectors(np.random.default_rng(0), 50, 384)
    assert vectors.shape == (50, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_latency_figures_pair_p50_and_p95():
    p50, p95 = latency_figures("search", [1.0, 2.0, 3.0], "floor", [1.0, 1.0, 1.0], "note")
    assert (p50.name, p50.value, p50.baseline, p50.ratio) == ("search p50", 2.0, 1.0, 2.0)
    assert p95.name == "search p95" and p95.value == pytest.approx(2.9)
    assert p50.note == "note" and p95.note == ""


def test_table_lists_figures_notes_and_skips():
    report = Report(figures=[Figure("recall@10 10k", 0.9, "", "exact scan", 1.0, "random")],
                    skipped=["LangChain comparison: not installed"])
    table = report.table()
    assert "recall@10 10k" in table and "0.90x" in table
    assert "recall@10 10k: random" in table
    assert "skipped: LangChain comparison: not installed" in table


def test_standin_vectors_are_unit_deterministic_and_lexical():
    from pgask_measure.bench.standin import standin_vectors

    texts = ["the disk on the database host is full",
             "the database host disk is nearly full",
             "photosynthesis in marine algae"]
    vectors = standin_vectors(texts)
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, standin_vectors(texts))
    # Shared words make neighbours: not noise.
    assert vectors[0] @ vectors[1] > 0.7 > vectors[0] @ vectors[2]
    # A text without words still gets a unit vector, never a zero one.
    assert np.linalg.norm(standin_vectors(["12 34 !!"])[0]) == pytest.approx(1.0)


def test_scale_copies_vary_and_keep_most_words():
    from pgask_measure.bench.scale import varied

    base = [("Title", " ".join(f"word{i}" for i in range(100))), ("T2", "alpha beta gamma")]
    rows = list(varied(base, 7))
    assert rows[:2] == base  # the first copy is the text itself
    copies = [content for _, content in rows[2::2]]  # the first chunk, copies 1, 2, 3
    assert [c.split()[-1] for c in copies] == ["rev1", "rev2", "rev3"]
    assert len(set(copies)) == 3  # each copy drops different words
    for content in copies:
        assert 80 <= len(content.split()) - 1 < 100


def test_round_pairs_print_each_round():
    from pgask_measure.bench.report import round_pairs

    assert round_pairs([1.24, 2.0], [3.0, 4.5]) == "1.2/3.0, 2.0/4.5"
    assert round_pairs([812.4, 790.6], [701.0, 688.2], 0) == "812/701, 791/688"
    assert round_pairs([], []) == ""
    with pytest.raises(ValueError):
        round_pairs([1.0], [1.0, 2.0])


def test_copy_rows_are_deterministic_distinct_and_short():
    from pgask_measure.bench.copyload import copy_rows

    rows = copy_rows(1000)
    assert rows == copy_rows(1000)
    assert [i for i, _ in rows] == list(range(1000))
    assert len({body for _, body in rows}) == 1000
    assert all(50 <= len(body) <= 70 for _, body in rows)
    assert 55 <= sum(len(body) for _, body in rows) / len(rows) <= 65
    assert copy_rows(3) == rows[:3]


def test_copy_text_is_copy_text_format():
    from pgask_measure.bench.copyload import copy_rows, copy_text

    assert copy_text([(1, "a b"), (2, "c")]) == b"1\ta b\n2\tc\n"
    # Tabs, newlines and backslashes in a body are escaped, never field or row breaks.
    assert copy_text([(3, "x\ty\nz\\w\r")]) == b"3\tx\\ty\\nz\\\\w\\r\n"
    data = copy_text(copy_rows(100))
    assert data.count(b"\n") == 100 and data.count(b"\t") == 100


def test_uss_counts_only_private_pages_and_grows_with_what_this_process_writes():
    import os

    from pgask_measure.bench.memory import uss_mb
    from pgask_measure.bench.run import GROUPS

    assert "memory" in GROUPS
    before = uss_mb(os.getpid())
    block = bytearray(64 * 2**20)  # 64 MB, zero-filled: touched, so private
    after = uss_mb(os.getpid())
    assert 0 < before and after - before > 50
    rss_mb = int(next(line.split()[1] for line in open(f"/proc/{os.getpid()}/smaps_rollup")
                      if line.startswith("Rss:"))) / 1024
    assert after <= rss_mb  # shared library pages are in Rss, not in USS
    del block
