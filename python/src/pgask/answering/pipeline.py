"""rag.answer inside PostgreSQL: retrieve, answer (generated or extractive), guard, log.
(Over 400 lines: each step's failure, its fallback and its note sit beside the step.)

The plpgsql wrapper validates arguments first; provider failures that should stop the answer
come back as {"error": ...} so the wrapper raises them without a Python traceback.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace

from pgask import __version__, pipelines
from pgask.answering import judge, log_tokens, rewriting, sentence_vectors
from pgask.answering.extractive import NO_ANSWER, extractive_answer
from pgask.answering.grounding import check_grounding, is_no_answer
from pgask.llm.chat import ChatClient, LLMError, LLMOptions, LLMSpec
from pgask.llm.prompt import DEFAULT_CONTEXT_TOKENS, PromptTemplate, build_prompt
from pgask.plans import prepared
from pgask.providers import read_secret, resolve_api_key
from pgask.providers.errors import KeyAccessError
from pgask.retrieval.options import SearchOptions
from pgask.retrieval.passage import Passage
from pgask.retrieval.query_embedding import SearchUnavailable
from pgask.sqlvalues import parse_json as _parse

GUARDS = ("replace", "flag", "judge")
JUDGE_UNSUPPORTED = ("withhold", "drop", "flag")
SEARCH_OPTIONS = set(SearchOptions._fields)
ON_LLM_ERROR = ("fallback", "error")


@dataclass(frozen=True)
class AnswerOptions:
    # A rag.llms name; None: the default LLM (rag.create_llm), else extractive.
    llm: str | None = None
    # What to do with a generated answer the grounding guard flags: "replace" it by the
    # extractive answer (with a note), or only "flag" it (grounded: false).
    guard: str = "replace"
    # guard "judge": after the grounding guard, one more LLM call judges every claim against
    # the passage it rests on (pgask.answering.judge). judge_llm: the rag.llms name that
    # judges (None: the answering LLM); judge_unsupported: what a claim the judge or the
    # grounding guard does not find supported does to the answer: "withhold" it (the
    # extractive answer, as "replace"), "drop" those claims (withheld when none is left), or
    # "flag" it (grounded: false, as "flag").
    judge_llm: str | None = None
    judge_unsupported: str = "withhold"
    # An LLM that fails after its retries: "fallback" to the extractive answer, or "error".
    on_llm_error: str = "fallback"
    max_context_tokens: int = DEFAULT_CONTEXT_TOKENS
    prompt: dict | None = None  # {"system": ..., "user": ...}: see pgask.llm.prompt
    search: dict | None = None  # rag.search options
    log: bool = True
    # Query rewriting by the LLM before retrieval (pgask.answering.rewriting): each costs
    # extra LLM calls and its value could not be measured offline, so both are off.
    hyde: bool = False  # search with the embedding of a hypothetical answer
    multi_step: bool = False  # split the question, retrieve per part, answer from the union

    @classmethod
    def resolve(cls, *layers: dict | None) -> AnswerOptions:
        options = cls()
        known = {f.name for f in fields(cls)}
        for layer in layers:
            if layer is None:
                continue
            if not isinstance(layer, dict):
                raise ValueError(f"options must be a JSON object, got {layer!r}")
            unknown = sorted(set(layer) - known)
            searching = [key for key in unknown if key in SEARCH_OPTIONS]
            if searching:  # one way to set each: rag.search's options live under "search"
                raise ValueError(f"{', '.join(searching)} is a rag.search option: give it as "
                                 f"{{\"search\": {{\"{searching[0]}\": ...}}}}")
            if unknown:
                raise ValueError(f"unknown option(s) {', '.join(unknown)}; known: "
                                 + ", ".join(sorted(known)))
            options = replace(options, **layer)
        options._check()
        return options

    def _check(self) -> None:
        if self.llm is not None and not isinstance(self.llm, str):
            raise ValueError(f"option llm must name an LLM, got {self.llm!r}")
        if self.guard not in GUARDS:
            raise ValueError(f"option guard must be one of {', '.join(GUARDS)}, got "
                             f"{self.guard!r}")
        if self.judge_llm is not None and not isinstance(self.judge_llm, str):
            raise ValueError(f"option judge_llm must name an LLM (rag.llms), got "
                             f"{self.judge_llm!r}")
        if self.judge_unsupported not in JUDGE_UNSUPPORTED:
            raise ValueError("option judge_unsupported must be one of "
                             f"{', '.join(JUDGE_UNSUPPORTED)}, got {self.judge_unsupported!r}")
        if self.on_llm_error not in ON_LLM_ERROR:
            raise ValueError(f"option on_llm_error must be one of {', '.join(ON_LLM_ERROR)}, "
                             f"got {self.on_llm_error!r}")
        if (isinstance(self.max_context_tokens, bool)
                or not isinstance(self.max_context_tokens, int)
                or not 100 <= self.max_context_tokens <= 200_000):
            raise ValueError("option max_context_tokens must be an integer between 100 and "
                             f"200000, got {self.max_context_tokens!r}")
        if self.prompt is not None:
            PromptTemplate.from_dict(self.prompt)  # raises ValueError naming the problem
        if self.search is not None and not isinstance(self.search, dict):
            raise ValueError(f"option search must be a JSON object of rag.search options, got "
                             f"{self.search!r}")
        for name in ("log", "hyde", "multi_step"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"option {name} must be true or false, got "
                                 f"{getattr(self, name)!r}")


def answer_options_error(options_json) -> str | None:
    try:
        AnswerOptions.resolve(_parse(options_json))
    except ValueError as exc:
        return f"options: {exc}"
    return None


def llm_options_error(options_json) -> str | None:
    try:
        LLMOptions.from_dict("new", _parse(options_json))
    except ValueError as exc:
        return str(exc).replace("LLM 'new': ", "")
    return None


_clients: dict[tuple, ChatClient] = {}


def load_llm(plpy, name: str) -> ChatClient:
    """The chat client for a rag.llms row, rebuilt when the row changes."""
    rows = plpy.execute(prepared(plpy, "SELECT name, provider, model, base_url, api_key_env,"
                              " options::text AS options FROM rag.llms WHERE name = $1",
                              ["text"]), [name])
    if not rows:
        raise LLMError(f"LLM {name!r} is not registered (rag.create_llm)")
    row = dict(rows[0])
    key = tuple(row.items())
    client = _clients.get(key)
    if (row["api_key_env"] or "").startswith("secret:") or client is None:
        # A stored key is checked on every call: may this role use it (pgask_reader)?
        api_key = resolve_api_key(_Named(row["name"], row["api_key_env"], row["base_url"]),
                                  lambda secret: read_secret(plpy, secret), what="LLM")
        if client is None or client.spec.api_key != api_key:  # new row or rotated key
            client = ChatClient(LLMSpec(row["name"], row["provider"], row["model"],
                                        row["base_url"], api_key, json.loads(row["options"])))
            _clients[key] = client
    return client


@dataclass(frozen=True)
class _Named:
    name: str
    api_key_env: str | None
    base_url: str | None = None


def _retrieve(plpy, question, k, filter_json, p: pipelines.Pipeline, search_options,
              result: dict, embed_text: str | None = None):
    """The passages for the question (rag.search's rows, hybrid, with each chunk's place in
    its document), and the embed/search/rerank timings. rag.answer has validated the
    arguments as rag.search would, so the search runs here without a second round trip.
    `embed_text` (hyde's hypothetical answer) replaces the question in the vector search.
    A search that went on by keyword only (the embedder down) or was not reranked says so in
    result["degraded"] and result["not_reranked"]; one that could not run raises
    SearchUnavailable (on_embedder_error 'error')."""
    from pgask.retrieval import search as retrieval

    started = time.perf_counter()
    found, report = retrieval.run(
        plpy, question, None, k, filter_json, "hybrid", p.name,
        None if search_options is None else json.dumps(search_options), places=True,
        embed_text=embed_text)
    degraded = report.get("degraded")
    # Similarity to the question, which the extractive answerer's "on topic" gate reads:
    # none without the query's vector (None: _extractive measures it with the local model).
    rows = [{key: r[key] for key in ("chunk_id", "document_id", "title", "source", "content",
                                     "score", *retrieval.PLACE_COLUMNS)}
            | {"similarity": None if degraded else (r["vector_score"] or 0.0)} for r in found]
    for key in ("degraded", "not_reranked"):
        if report.get(key) and not result.get(key):
            result[key] = report[key]
    embed_ms = report.get("embed_ms", 0.0)
    rerank_ms = report.get("rerank_ms", 0.0)
    timings = {"embed": embed_ms,
               "search": (time.perf_counter() - started) * 1000 - embed_ms - rerank_ms,
               "rerank": rerank_ms}
    return rows, timings


def _extractive(question: str, rows: list[dict]):
    from pgask.embedders.local import DIMENSIONS
    from pgask.embedders.service import backend_embedder

    # The answerer's "is anything on topic" gate is calibrated on cosine similarity, which
    # hybrid search reports per chunk (a chunk found by keyword alone counts as 0 there).
    # A search by keyword only (the pipeline's embedder down) has none: the local model,
    # on which the gate was calibrated, measures it here.
    # The sentences' vectors come with the chunk where the worker stored them.
    embedder = backend_embedder()
    similarity = [r["similarity"] for r in rows]
    if rows and None in similarity:
        similarity = (embedder.embed([r["content"] for r in rows])
                      @ embedder.embed_query(question)).tolist()
    passages = [Passage(r["content"], r["title"], chunk_id=r["chunk_id"],
                        document_id=r["document_id"], source=r["source"],
                        char_start=r["char_start"], ordinal=r["ordinal"], score=score,
                        sentences=sentence_vectors.decode(r["sentence_spans"],
                                                          r["sentence_vectors"], DIMENSIONS))
                for r, score in zip(rows, similarity, strict=True)]
    return (extractive_answer(embedder.embed_query(question), passages, embedder.embed,
                              question=question), embedder.name)


def _local_embed():
    """The local model's embed, which the guard uses to see a paraphrase: loaded once per
    backend (the extractive answerer uses the same one); None when it cannot be loaded, and
    the guard then judges on words and facts alone."""
    try:
        from pgask.embedders.service import backend_embedder

        return backend_embedder().embed
    except (ImportError, OSError, RuntimeError):
        return None


def _citation(n: int, row: dict) -> dict:
    return {"n": n, "chunk_id": row["chunk_id"], "document_id": row["document_id"],
            "title": row["title"], "source": row["source"], "chunk": row["ordinal"],
            "span": [row["char_start"], row["char_end"]]}


def _default_llm(plpy) -> str | None:
    rows = plpy.execute(prepared(plpy, "SELECT value FROM rag.settings WHERE key = 'default_llm'"
                              " AND value IN (SELECT name FROM rag.llms)", []), [])
    return rows[0]["value"] if rows else None


def answer(plpy, question, k, filter_json, pipeline, model, options_json) -> str:
    started = time.perf_counter()
    p = pipelines.load(plpy, pipeline)
    options = AnswerOptions.resolve(p.answer_options, _parse(options_json))
    llm_name = model if model is not None else (options.llm or _default_llm(plpy))
    if llm_name == "extractive":
        llm_name = None

    result = {"question": question, "mode": None, "answer": None, "citations": [],
              "model": None, "llm": llm_name, "usage": {"prompt_tokens": 0,
                                                        "completion_tokens": 0},
              "grounded": True, "problems": [], "note": None, "llm_error": None,
              "degraded": None}
    try:
        return _answer(plpy, question, k, filter_json, p, llm_name, options, result, started)
    except SearchUnavailable as exc:  # the embedder down, and on_embedder_error 'error'
        return json.dumps({"error": str(exc), "hint": exc.hint, "sqlstate": "38000"})
    except KeyAccessError as exc:  # the role may not use the embedder's stored key
        return json.dumps({"error": str(exc), "sqlstate": "42501"})
    except plpy.SPIError as exc:
        # rag.embed's or rag.search's own clean error (a provider down: 38000; a reader
        # without rights: 42501): raised again by the wrapper, without a traceback.
        message = str(exc).removeprefix("rag.search: ").removeprefix("rag.embed: ")
        return json.dumps({"error": message, "sqlstate": getattr(exc, "sqlstate", None)})


def _answer(plpy, question, k, filter_json, p, llm_name, options, result, started) -> str:
    """answer()'s retrieval, generation and log, once its options are resolved."""
    if options.hyde or options.multi_step:
        if llm_name is None:
            return json.dumps({
                "error": "options hyde and multi_step need an LLM to rewrite the question, "
                         "and none is chosen (model => 'extractive', or no LLM registered)",
                "hint": "Register one with rag.create_llm, or leave hyde and multi_step "
                        "false.", "sqlstate": "22023"})
        rows, timings = _rewritten_retrieve(plpy, llm_name, question, k, filter_json, p,
                                            options, result)
        if rows is None:
            return json.dumps({"error": result["llm_error"],
                               "hint": "Set options => '{\"on_llm_error\": \"fallback\"}' "
                                       "to search with the question itself when the LLM "
                                       "fails."})
    else:
        rows, timings = _retrieve(plpy, question, k, filter_json, p, options.search, result)
    if (options.guard == "judge" and llm_name is not None and options.judge_llm is not None
            and not plpy.execute(prepared(plpy, "SELECT 1 FROM rag.llms WHERE name = $1",
                                          ["text"]), [options.judge_llm])):
        return json.dumps({"error": f"option judge_llm names {options.judge_llm!r}, which is "
                                    "not a registered LLM (rag.llms)",
                           "hint": "Register it with rag.create_llm, or leave judge_llm out "
                                   "to judge with the answering LLM.", "sqlstate": "22023"})
    generate_started = time.perf_counter()
    if llm_name is not None and rows:  # nothing retrieved: "I don't know" costs no tokens
        outcome = _generate(plpy, llm_name, question, rows, options, result)
        if outcome == "error":
            return json.dumps({"error": result["llm_error"],
                               "hint": "Set options => '{\"on_llm_error\": \"fallback\"}' to "
                                       "answer extractively when the LLM fails."})
    if result["mode"] is None:  # extractive: no LLM, or the LLM's answer was not usable
        extracted, scorer = _extractive(question, rows)
        result["mode"] = extracted.mode
        result["answer"] = extracted.text
        result["citations"] = [asdict(c) for c in extracted.citations]
        result["model"] = scorer  # the model that chose the sentences
    timings["generate"] = (time.perf_counter() - generate_started) * 1000
    if "judge" in result:  # the judge's call is timed apart from the answer's
        timings["judge"] = result.pop("judge")["ms"]
        timings["generate"] -= timings["judge"]
    rewrite_note = result.get("rewrites", {}).pop("note", None)
    # Said first: they explain what the answer was retrieved with.
    retrieval_notes = [rewrite_note, _degraded_note(result)]
    result["note"] = " ".join(filter(None, [*retrieval_notes, result["note"]])) or None
    timings["total"] = (time.perf_counter() - started) * 1000
    result["timings_ms"] = {key: round(value, 1) for key, value in timings.items()}
    result["retrieved"] = [{"chunk_id": r["chunk_id"], "score": r["score"]} for r in rows]
    result["version"] = __version__
    result["answer_id"] = None
    if not options.log:
        result["log"] = "skipped: option log is false"
    else:
        read_only = read_only_reason(plpy)
        if read_only is not None:
            # A hot standby (or a read-only transaction) answers; only the log is left out,
            # visibly, because rag.answer_log can only be written on the primary.
            result["log"] = f"skipped: {read_only}"
        else:
            result["answer_id"] = _log(plpy, p.name, result)
            result["log"] = "logged" if result["answer_id"] is not None else (
                f"skipped: at most {_logs_per_minute(plpy)} answers a minute are logged per"
                " role (rag.settings answer_log_max_per_minute)")
    return json.dumps(result)


def _degraded_note(result: dict) -> str | None:
    """What the reader should know about the passages: found by keyword only (the embedder
    was down), or not reranked (the reranker failed)."""
    notes = []
    if result.get("degraded"):
        notes.append("This answer comes from keyword search (BM25) only: the embedder could "
                     f"not embed the question ({result['degraded']}).")
    if result.get("not_reranked"):
        notes.append("The passages are in first-stage order: the reranker failed "
                     f"({result.pop('not_reranked')}).")
    return " ".join(notes) or None


def read_only_reason(plpy) -> str | None:
    """Why this transaction cannot write (None if it can): a hot standby, or a read-only
    transaction on the primary (BEGIN READ ONLY, default_transaction_read_only)."""
    row = plpy.execute(prepared(plpy, (
        "SELECT pg_is_in_recovery() AS standby,"
        " current_setting('transaction_read_only') = 'on' AS read_only"), []), [])[0]
    if row["standby"]:
        return "read-only (hot standby)"
    if row["read_only"]:
        return "read-only transaction"
    return None


def _generate(plpy, llm_name, question, rows, options, result) -> str:
    """Fills `result` from the LLM; leaves mode None when the extractive answer must be used.
    Returns "error" when the LLM failed and options say so."""
    template = PromptTemplate.from_dict(options.prompt) if options.prompt else None
    prompt = build_prompt(question, [Passage(r["content"], r["title"]) for r in rows],
                          max_context_tokens=options.max_context_tokens,
                          **({"template": template} if template else {}))
    try:
        reply = load_llm(plpy, llm_name).complete(prompt.messages)
    except (LLMError, ValueError) as exc:
        result["llm_error"] = str(exc)
        if options.on_llm_error == "error":
            return "error"
        result["note"] = f"The LLM failed, so this answer is extractive: {exc}"
        return "fallback"
    result["model"] = reply.model
    _add_usage(result, reply)
    text = reply.text.strip()
    if is_no_answer(text):
        result.update(mode="no_answer", answer=NO_ANSWER)
        return "done"
    shown = [rows[i] for i in prompt.included]
    passages = [r["content"] for r in shown]
    grounding = check_grounding(text, passages, question=question, embed=_local_embed())
    result["grounded"] = grounding.grounded
    result["problems"] = grounding.problems
    result["claims"] = [asdict(c) for c in grounding.claims]
    # The reply as the LLM wrote it, wherever the answer shown is not that: withheld, or
    # with its [n] marks corrected by the guard.
    result["generated_answer"] = text
    flag = options.guard == "flag"
    if options.guard == "judge":
        grounding = _judged(plpy, options.judge_llm or llm_name, question, passages,
                            grounding, result, options.on_llm_error)
        if grounding is None:  # the judge failed and on_llm_error is "error"
            return "error"
        flag = options.judge_unsupported == "flag"
        if options.judge_unsupported == "drop" and not grounding.grounded:
            grounding = _dropped(question, text, passages, grounding, result)
    if grounding.grounded or flag:
        if grounding.answer is None:
            del result["generated_answer"]
        result.update(mode="generated", answer=grounding.answer or text,
                      citations=[_citation(n, shown[n - 1]) for n in grounding.cited])
        return "done"
    result["note"] = ("The generated answer was withheld because the passages shown do not "
                      "support it (" + "; ".join(grounding.problems) + "); this answer "
                      "is extractive.")
    return "fallback"


def _judged(plpy, judge_name, question, passages, grounding, result, on_llm_error):
    """The grounding guard's verdict with the LLM judge's added (guard "judge"): each claim's
    verdict in result["claims"], a problem per claim the judge does not find supported, the
    judge's tokens in result["usage"] (and apart in usage["judge"]), its time in
    result["judge"]["ms"]. A judge that fails leaves every claim without a verdict (not
    supported): None when on_llm_error is "error" (result["llm_error"] says why)."""
    started = time.perf_counter()
    items, known = judge.items_for(grounding.claims, len(passages))
    usage = {"llm": judge_name, "calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    result["usage"]["judge"] = usage
    failed = None
    reply_text = ""
    if items:
        request = judge.build_request(question, items, passages)
        usage["calls"] = 1
        try:
            reply = load_llm(plpy, judge_name).complete(request.messages,
                                                        max_tokens=request.max_tokens)
            _add_usage(result, reply)
            usage["prompt_tokens"] = reply.prompt_tokens or 0
            usage["completion_tokens"] = reply.completion_tokens or 0
            reply_text = reply.text
        except (LLMError, ValueError) as exc:
            failed = str(exc)
    result["judge"] = {"ms": (time.perf_counter() - started) * 1000}
    if failed is not None:
        result["llm_error"] = f"the judge failed: {failed}"
        if on_llm_error == "error":
            return None
    decided, verdicts = judge.decide(grounding, items, known,
                                     judge.parse(reply_text, len(items)), failed)
    result["claims"] = [asdict(c) | {"verdict": v}
                        for c, v in zip(decided.claims, verdicts, strict=True)]
    result["grounded"] = decided.grounded
    result["problems"] = decided.problems
    return decided


def _dropped(question, text, passages, grounding, result):
    """The answer without the claims found unsupported (judge_unsupported "drop"), its
    marks set again by the grounding guard, with a note; `grounding` itself (withheld) when
    no supported claim is left."""
    kept = judge.drop_unsupported(text, grounding)
    if kept is None:
        return grounding
    regrounded = check_grounding(kept, passages, question=question, embed=_local_embed())
    if not regrounded.grounded:
        return grounding
    dropped = sum(1 for c in grounding.claims if not c.supported)
    result["note"] = (f"{dropped} claim(s) of the generated answer were dropped because the "
                      "passages shown do not support them: " + "; ".join(grounding.problems))
    result["grounded"] = True
    result["problems"] = grounding.problems
    return replace(regrounded, answer=regrounded.answer or kept)


def _add_usage(result: dict, reply) -> None:
    usage = result["usage"]
    usage["prompt_tokens"] += reply.prompt_tokens or 0
    usage["completion_tokens"] += reply.completion_tokens or 0


def _rewritten_retrieve(plpy, llm_name, question, k, filter_json, p, options, result):
    """Retrieval after the LLM rewrote the question (options hyde, multi_step): the rows and
    timings, with result["rewrites"] saying what was searched and how many LLM calls it took.
    An LLM failure searches with the question itself (on_llm_error fallback, with a note) or
    returns (None, None) with result["llm_error"] set (on_llm_error error)."""
    started = time.perf_counter()
    rewrites: dict = {"llm_calls": 0}
    result["rewrites"] = rewrites
    hypothetical = None
    parts: list[str] = []
    try:
        client = load_llm(plpy, llm_name)
        if options.hyde:
            rewrites["llm_calls"] += 1
            reply = client.complete(rewriting.hyde_messages(question))
            _add_usage(result, reply)
            hypothetical = reply.text.strip() or None
            rewrites["hyde"] = hypothetical
        if options.multi_step:
            rewrites["llm_calls"] += 1
            reply = client.complete(rewriting.decompose_messages(question))
            _add_usage(result, reply)
            parts = rewriting.parse_parts(reply.text, question)
            rewrites["parts"] = parts
    except (LLMError, ValueError) as exc:
        result["llm_error"] = str(exc)
        if options.on_llm_error == "error":
            return None, None
        rewrites["note"] = ("The LLM failed to rewrite the question, so it was searched as "
                            f"is: {exc}")
    rewrite_ms = (time.perf_counter() - started) * 1000
    rows, timings = _retrieve(plpy, question, k, filter_json, p, options.search, result,
                              hypothetical)
    if parts:
        found = [rows]
        for part in parts:
            part_rows, part_timings = _retrieve(plpy, part, k, filter_json, p, options.search,
                                                result)
            found.append(part_rows)
            for key, value in part_timings.items():
                timings[key] += value
        rows = rewriting.union(found, min(50, k * len(found)))
    timings["rewrite"] = rewrite_ms
    return rows, timings


def _logs_per_minute(plpy) -> int:
    rows = plpy.execute(prepared(plpy, "SELECT value FROM rag.settings"
                                 " WHERE key = 'answer_log_max_per_minute'", []))
    return int(rows[0]["value"]) if rows else 600


def _log(plpy, pipeline: str, result: dict) -> int | None:
    """The answer's row in rag.answer_log (its id), or None when the role's rate is spent."""
    entry = {
        "token": log_tokens.issue(),
        "pipeline": pipeline, "question": result["question"], "answer": result["answer"],
        "mode": result["mode"], "model": result["model"], "llm": result["llm"],
        "grounded": result["grounded"], "problems": result["problems"],
        "retrieved_chunk_ids": [r["chunk_id"] for r in result["retrieved"]],
        "retrieved_scores": [r["score"] for r in result["retrieved"]],
        "cited_chunk_ids": [c["chunk_id"] for c in result["citations"]],
        "cited_document_ids": [str(c["document_id"]) for c in result["citations"]],
        "cited_sources": [c["source"] for c in result["citations"]],
        "prompt_tokens": result["usage"]["prompt_tokens"],
        "completion_tokens": result["usage"]["completion_tokens"],
        "timings_ms": result["timings_ms"], "error": result["llm_error"],
        "degraded": result["degraded"],
    }
    rows = plpy.execute(prepared(plpy, "SELECT rag._log_answer($1::jsonb) AS id", ["text"]),
                        [json.dumps(entry)])
    return rows[0]["id"]
