"""The experiment of issue 32 that asks the judge one yes/no question per claim and reads the
probability of "yes" (pgask_measure.judge_yesno): the request it sends, how P(yes) is read (a
reply without readable log-probabilities never lets a claim through), the threshold rule, the
threshold chosen by cross-validation, and the committed recording's figures."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from pgask.answering import judge
from pgask.answering.grounding import check_grounding
from pgask_measure import judge_yesno
from pgask_measure.guard_replay import RecordingMismatch, load, replay, replay_at

PASSAGE = ("Audit logs are kept for 400 days. After that they are deleted by a nightly job. "
           "Operators can export them to cold storage before then.")
QUESTION = "How long are audit logs kept?"


def items_for(answer, passages):
    grounding = check_grounding(answer, passages)
    items, known = judge.items_for(grounding.claims, len(passages))
    return grounding, items, known


def top(*pairs):
    return [list(pair) for pair in pairs]


def response(content="Yes", logprobs=(("Yes", -0.1), ("No", -2.4), ("To", -5.0))):
    """A llama.cpp server's chat completion with logprobs (the shape xllamacpp returns)."""
    return {"choices": [{"finish_reason": "length", "index": 0,
                         "message": {"role": "assistant", "content": content},
                         "logprobs": {"content": [{
                             "id": 9454, "token": content, "logprob": logprobs[0][1],
                             "top_logprobs": [{"id": i, "token": t, "logprob": lp, "bytes": []}
                                              for i, (t, lp) in enumerate(logprobs)]}]}}],
            "usage": {"completion_tokens": 1, "prompt_tokens": 60, "total_tokens": 61}}


def test_one_request_per_claim_with_only_the_passages_it_rests_on():
    _, items, _ = items_for("Audit logs are kept for 400 days [2]. The nightly job runs at "
                            "02:00 [3].", ["Unrelated text.", PASSAGE,
                                           "The nightly job runs at 02:00."])
    requests = judge_yesno.build_requests(QUESTION, items, ["Unrelated text.", PASSAGE,
                                                            "The nightly job runs at 02:00."])
    assert [r.item.passages for r in requests] == [[2], [3]]
    system, user = requests[0].messages
    assert system["role"] == "system" and user["role"] == "user"
    assert user["content"] == (
        f"Passage:\n[2] {PASSAGE}\n\nQuestion: {QUESTION}\n"
        "Claim: Audit logs are kept for 400 days.\n\n"
        "Does the passage state this claim? Answer yes or no.")
    assert "Unrelated" not in requests[1].messages[1]["content"]
    assert PASSAGE not in requests[1].messages[1]["content"]


def test_the_body_asks_for_one_token_at_temperature_0_with_its_log_probabilities():
    _, items, _ = items_for("Audit logs are kept for 400 days [1].", [PASSAGE])
    request = judge_yesno.build_request(QUESTION, items[0], [PASSAGE])
    sent = judge_yesno.body("qwen", request)
    assert sent == {"model": "qwen", "messages": request.messages, "max_tokens": 1,
                    "temperature": 0, "logprobs": True, "top_logprobs": 5}


def test_a_long_passage_is_cut_as_the_product_judge_cuts_it():
    long = "Audit logs are kept for 400 days. " + "Filler sentence here. " * 200
    _, items, _ = items_for("Audit logs are kept for 400 days [1].", [long])
    user = judge_yesno.build_request(QUESTION, items[0], [long]).messages[1]["content"]
    assert len(user) < judge.PASSAGE_CHARS + 300 and " ..." in user


@pytest.mark.parametrize(("logprobs", "expected"), [
    (top(("Yes", -0.1), ("No", -2.4)), 0.909),
    (top(("No", -0.1), ("Yes", -2.4)), 0.091),
    # every case and leading-space variant counts; other tokens do not
    (top(("Yes", -1.0), (" yes", -1.0), ("YES", -1.0), ("No", -1.0), ("To", -0.1)), 0.75),
    (top(("Yes", -0.2), ("To", -3.0)), 1.0),  # no "no" among the top tokens
    (top(("no", -0.2), ("Let", -3.0)), 0.0),
    (top(("To", -0.2), ("Let", -3.0)), None),  # neither: unreadable
    ([], None),
    (None, None),
    ([["Yes"]], None),  # malformed pairs
    ([["Yes", "high"]], None),
])
def test_p_yes_is_normalised_over_the_yes_and_no_tokens(logprobs, expected):
    found = judge_yesno.p_yes(logprobs)
    assert found == expected if expected is None or expected in (0.0, 1.0) \
        else found == pytest.approx(expected, abs=1e-3)


def test_the_recorded_fields_of_a_response():
    got = judge_yesno.read(response())
    assert got["reply"] == "Yes" and got["top_logprobs"][:2] == [["Yes", -0.1], ["No", -2.4]]
    assert got["p_yes"] == pytest.approx(0.909, abs=1e-3)
    assert (got["prompt_tokens"], got["completion_tokens"]) == (60, 1)


@pytest.mark.parametrize("broken", [
    {"choices": [{"message": {"content": "Yes"}}]},  # a server that ignores logprobs
    {"choices": [{"message": {"content": "Yes"}, "logprobs": None}]},
    {"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": []}}]},
    {"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": [{"token": "Yes"}]}}]},
    {"choices": []},
    {"error": "model not loaded"},
])
def test_a_reply_without_readable_log_probabilities_supports_nothing(broken):
    got = judge_yesno.read(broken)
    assert got["p_yes"] is None
    assert judge_yesno.verdict(got["p_yes"]) == judge.MALFORMED
    assert judge_yesno.parse({"answers": [got]}, 1) == [judge.MALFORMED]


def test_the_threshold_rule():
    assert judge_yesno.THRESHOLD == 0.5
    assert judge_yesno.verdict(0.5) == judge.SUPPORTED
    assert judge_yesno.verdict(0.4999) == judge.NOT_STATED
    assert judge_yesno.verdict(0.9, threshold=0.95) == judge.NOT_STATED
    assert judge_yesno.verdict(None, threshold=0.0) == judge.MALFORMED
    answers = [{"top_logprobs": top(("Yes", -0.1), ("No", -2.4))},  # 0.909
               {"top_logprobs": top(("Yes", -0.7), ("No", -0.7))}]  # 0.5
    assert judge_yesno.parse({"answers": answers}, 2) == [judge.SUPPORTED] * 2
    assert judge_yesno.parse({"answers": answers}, 2, 0.95) == [judge.NOT_STATED] * 2
    # P(yes) is recomputed from the log-probabilities, not taken from the recorded p_yes
    assert judge_yesno.parse({"answers": [answers[0] | {"p_yes": 0.0}]}, 1) == [
        judge.SUPPORTED]
    # not one answer per claim: nothing is read
    assert judge_yesno.parse({"answers": answers}, 3) == [judge.MALFORMED] * 3
    assert judge_yesno.parse({}, 1) == [judge.MALFORMED]


def test_ask_sends_the_body_and_records_the_reply():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            seen.append((self.path, json.loads(self.rfile.read(
                int(self.headers["Content-Length"])))))
            data = json.dumps(response("No", (("No", -0.2), ("Yes", -1.8)))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _, items, _ = items_for("Audit logs are kept for 400 days [1].", [PASSAGE])
        request = judge_yesno.build_request(QUESTION, items[0], [PASSAGE])
        got = judge_yesno.ask(f"http://127.0.0.1:{server.server_port}/v1", "qwen", request, 10)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("/v1/chat/completions", judge_yesno.body("qwen", request))]
    assert got["reply"] == "No" and got["p_yes"] == pytest.approx(0.168, abs=1e-3)
    assert got["elapsed_ms"] >= 0
    entry = judge_yesno.entry_for([got, got])
    assert (entry["calls"], entry["prompt_tokens"], entry["reply"]) == (2, 120, "No No")


def line_and_entry(logprobs_per_claim):
    line = {"id": "q1", "question": QUESTION, "gold": ["400 days"],
            "reply": "Audit logs are kept for 400 days [1]. They are deleted by a nightly "
                     "job [1].", "passages": [PASSAGE]}
    answers = [{"reply": "Yes", "top_logprobs": lp, "p_yes": judge_yesno.p_yes(lp),
                "prompt_tokens": 100, "completion_tokens": 1, "elapsed_ms": 50.0}
               for lp in logprobs_per_claim]
    entry = {"id": "q1", "protocol": "yesno",
             "claims": [["Audit logs are kept for 400 days.", [1]],
                        ["They are deleted by a nightly job.", [1]]]} | \
        judge_yesno.entry_for(answers)
    return line, entry


def test_an_answer_is_kept_only_when_every_claim_reaches_the_threshold():
    line, entry = line_and_entry([top(("Yes", -0.1), ("No", -2.4)),  # 0.909
                                  top(("Yes", -0.5), ("No", -1.0))])  # 0.622
    (row,) = replay([line], [entry], protocol="yesno")
    assert row.kept == {"words": True, "judge": True}
    assert (row.calls, row.judge_prompt_tokens, row.judge_ms) == (2, 200, 100.0)
    (row,) = replay([line], [entry], protocol="yesno", threshold=0.7)
    assert row.kept == {"words": True, "judge": False}
    assert row.verdicts == [judge.SUPPORTED, judge.NOT_STATED]
    by = replay_at([line], [entry], protocol="yesno", thresholds=[0.5, 0.7, 0.95])
    assert [rows[0].kept["judge"] for rows in by.values()] == [True, False, False]
    line, entry = line_and_entry([top(("Yes", -0.1), ("No", -2.4)), None])
    (row,) = replay([line], [entry], protocol="yesno", threshold=0.0)
    assert row.kept["judge"] is False and row.verdicts[1] == judge.MALFORMED
    with pytest.raises(RecordingMismatch, match="recorded with the judge protocol"):
        replay([line], [entry], protocol="verdict")


def score_of(correct, invented, wrong):
    return {"correct": correct, "invented": invented, "wrong": wrong}


def test_choose_keeps_the_goal_first_then_stops_the_most():
    scores = {0.5: score_of((12, 12), (2, 18), (1, 5)),
              0.8: score_of((11, 12), (5, 18), (2, 5)),  # 92 % kept: meets the keep goal
              0.9: score_of((11, 12), (6, 18), (2, 5)),
              0.95: score_of((9, 12), (12, 18), (4, 5))}  # stops more, keeps 75 %
    assert judge_yesno.choose(scores) == 0.9
    # ties: the middle threshold of those tied
    tied = {t: score_of((12, 12), (3, 18), (1, 5)) for t in (0.1, 0.2, 0.3, 0.4)}
    assert judge_yesno.choose(tied) == 0.2
    # none meets the keep goal: the one that keeps the most, then stops the most
    short = {0.5: score_of((8, 12), (2, 18), (1, 5)), 0.6: score_of((8, 12), (4, 18), (1, 5)),
             0.7: score_of((6, 12), (9, 18), (3, 5))}
    assert judge_yesno.choose(short) == 0.6


def test_cross_validation_chooses_on_one_half_and_scores_the_other():
    ids = [f"answer-{i}" for i in range(40)]
    halves = {h: {i for i in ids if judge_yesno.half(i) == h} for h in (0, 1)}
    assert halves[0] and halves[1] and halves[0].isdisjoint(halves[1])
    assert judge_yesno.half("answer-3") == judge_yesno.half("answer-3")  # fixed, not random
    calls = []

    def score(threshold, chosen_ids):
        calls.append((threshold, frozenset(chosen_ids)))
        # half 0 would be best served by 0.3, half 1 by 0.7
        best = 0.3 if chosen_ids == halves[0] else 0.7
        kept = len(chosen_ids) if threshold <= best else 0
        return score_of((kept, len(chosen_ids)), (int(threshold * 10), 10), (0, 1))

    folds = judge_yesno.cross_validate(ids, score, grid=(0.3, 0.5, 0.7))
    # half 0 is scored at the threshold chosen on half 1, and the other way round
    assert [(h, t) for h, t, _ in folds] == [(0, 0.7), (1, 0.3)]
    assert folds[0][2]["correct"] == (0, len(halves[0]))
    total = judge_yesno.summed([s for _, _, s in folds])
    assert total["correct"] == (len(halves[1]), 40)


RECORDINGS = Path(__file__).resolve().parents[1] / "data" / "guard"
YESNO = RECORDINGS / "judge-yesno-qwen2.5-coder-1.5b.jsonl"


def test_the_recording_holds_one_readable_answer_per_claim():
    for entry in load(YESNO):
        assert entry["protocol"] == "yesno" and entry["calls"] == len(entry["claims"])
        assert len(entry["answers"]) == len(entry["claims"])
        for answer in entry["answers"]:
            assert answer["p_yes"] == judge_yesno.p_yes(answer["top_logprobs"])


def test_lowest_and_auc():
    entry = {"answers": [{"top_logprobs": top(("Yes", -0.1), ("No", -2.4))},
                         {"top_logprobs": top(("Yes", -0.7), ("No", -0.7))}]}
    assert judge_yesno.lowest(entry) == pytest.approx(0.5)
    assert judge_yesno.lowest({"answers": []}) is None
    assert judge_yesno.lowest({"answers": [{"top_logprobs": None}]}) is None
    assert judge_yesno.auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert judge_yesno.auc([0.5], [0.5]) == 0.5
    assert judge_yesno.auc([], [0.5]) is None


@pytest.fixture(scope="module")
def recorded():
    from pgask.embedders.local import get_local_embedder

    return replay_at(load(RECORDINGS / "squad-part-a-110.jsonl"), load(YESNO),
                     get_local_embedder().embed, "yesno", judge_yesno.GRID)


def counted(rows, ids=None):
    from pgask_measure.guard_replay import counts

    return counts([r for r in rows if ids is None or r.id in ids], "judge")


@pytest.mark.slow  # the embedding model judges paraphrases
def test_the_recording_replays_to_the_figures_reported(recorded):
    """Qwen2.5-Coder-1.5B as the yes/no judge (docs/quality.md) misses issue 32's goals: at
    P(yes) >= 0.5, fixed in advance, it keeps 20 of 24 correct replies, stops 11 of 36
    invented and 5 of 10 wrong; with the threshold chosen by 2-fold cross-validation, 21/24,
    10/36, 4/10. No threshold meets all three goals even on the answers it is scored on."""
    assert len(recorded[0.5]) == 70
    found = counted(recorded[0.5])
    assert (found["correct"], found["invented"], found["wrong"]) == ((20, 24), (11, 36), (5, 10))
    by_id = {t: {r.id: r for r in rows} for t, rows in recorded.items()}
    folds = judge_yesno.cross_validate(
        list(by_id[0.5]), lambda t, ids: counted([by_id[t][i] for i in ids]))
    assert [(h, t) for h, t, _ in folds] == [(0, 0.5), (1, 0.05)]
    total = judge_yesno.summed([s for _, _, s in folds])
    assert (total["correct"], total["invented"], total["wrong"]) == ((21, 24), (10, 36), (4, 10))
    assert not any(
        c["correct"][0] >= 22 and c["invented"][0] >= 18 and c["wrong"][0] >= 6
        for c in map(counted, recorded.values()))
