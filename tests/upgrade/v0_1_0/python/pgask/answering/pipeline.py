"""rag.answer inside PostgreSQL: retrieve, answer (generated or extractive), guard, log.

The plpgsql wrapper validates arguments first; provider failures that should stop the answer
come back as {"error": ...} so the wrapper raises them without a Python traceback.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields, replace

from pgask import __version__
from pgask.answering.extractive import NO_ANSWER, Passage, extractive_answer
from pgask.answering.grounding import check_grounding, is_no_answer
from pgask.embedders.errors import EmbedderError
from pgask.llm.chat import ChatClient, LLMError, LLMOptions, LLMSpec
from pgask.llm.prompt import DEFAULT_CONTEXT_TOKENS, PromptTemplate, build_prompt
from pgask.llm.prompt import Passage as PromptPassage
from pgask.plans import prepared

GUARDS = ("replace", "flag")
ON_LLM_ERROR = ("fallback", "error")


@dataclass(frozen=True)
class AnswerOptions:
    # A rag.llms name; None: the default LLM (rag.create_llm), else extractive.
    llm: str | None = None
    # What to do with a generated answer the grounding guard flags: "replace" it by the
    # extractive answer (with a note), or only "flag" it (grounded: false).
    guard: str = "replace"
    # An LLM that fails after its retries: "fallback" to the extractive answer, or "error".
    on_llm_error: str = "fallback"
    max_context_tokens: int = DEFAULT_CONTEXT_TOKENS
    prompt: dict | None = None  # {"system": ..., "user": ...}: see pgask.llm.prompt
    search: dict | None = None  # rag.search options
    log: bool = True

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
        if not isinstance(self.log, bool):
            raise ValueError(f"option log must be true or false, got {self.log!r}")


def _parse(text):
    return None if text is None else json.loads(text)


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
    from pgask.embedders.registry import resolve_api_key
    from pgask.queue import read_secret

    rows = plpy.execute(prepared(plpy, "SELECT name, provider, model, base_url, api_key_env,"
                              " options::text AS options FROM rag.llms WHERE name = $1",
                              ["text"]), [name])
    if not rows:
        raise LLMError(f"LLM {name!r} is not registered (rag.create_llm)")
    row = dict(rows[0])
    key = tuple(row.items())
    client = _clients.get(key)
    if client is None:
        try:
            api_key = resolve_api_key(_Named(row["name"], row["api_key_env"]),
                                      lambda secret: read_secret(plpy, secret), what="LLM")
        except EmbedderError as exc:
            raise LLMError(str(exc)) from None
        client = ChatClient(LLMSpec(row["name"], row["provider"], row["model"],
                                    row["base_url"], api_key, json.loads(row["options"])))
        _clients[key] = client
    return client


@dataclass(frozen=True)
class _Named:
    name: str
    api_key_env: str | None


def _retrieve(plpy, question, k, filter_json, pipeline, search_options, embedder):
    """The passages for the question, and the embed/search/rerank timings."""
    from pgask.retrieval import search as retrieval

    started = time.perf_counter()
    plpy.execute(prepared(plpy, "SELECT rag.embed($1, $2)", ["text", "text"]),
                 [question, embedder])  # cached: rag.search below reuses the vector
    embedded = time.perf_counter()
    chunks = plpy.quote_ident(f"{pipeline}_chunks")
    rows = plpy.execute(prepared(plpy, (
        "SELECT s.chunk_id, s.document_id, s.title, s.source, s.content, s.score,"
        " coalesce(s.vector_score, 0) AS similarity, c.ordinal, c.char_start, c.char_end"
        " FROM rag.search($1, $2, $3::jsonb, 'hybrid', $4, $5::jsonb) AS s"
        f" JOIN rag.{chunks} AS c ON c.id = s.chunk_id ORDER BY s.rank"),
        ["text", "int", "text", "text", "text"]),
        [question, k, filter_json, pipeline,
         None if search_options is None else json.dumps(search_options)])
    searched = time.perf_counter()
    rerank_ms = retrieval.last_timings.get("rerank_ms", 0.0)
    timings = {"embed": (embedded - started) * 1000,
               "search": (searched - embedded) * 1000 - rerank_ms, "rerank": rerank_ms}
    return [dict(r) for r in rows], timings


def _extractive(question: str, rows: list[dict]):
    from pgask.embedders.local import get_local_embedder

    # The answerer's "is anything on topic" gate is calibrated on cosine similarity, which
    # hybrid search reports per chunk (a chunk found by keyword alone counts as 0 there).
    passages = [Passage(r["chunk_id"], r["document_id"], r["title"], r["source"], r["content"],
                        r["char_start"], r["ordinal"], r["similarity"]) for r in rows]
    embedder = get_local_embedder()
    return (extractive_answer(embedder.embed_query(question), passages, embedder.embed,
                              question=question), embedder.name)


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
    p = plpy.execute(prepared(plpy, "SELECT embedder, answer_options::text AS answer_options"
                           " FROM rag.pipelines WHERE name = $1", ["text"]), [pipeline])[0]
    options = AnswerOptions.resolve(json.loads(p["answer_options"]), _parse(options_json))
    llm_name = model if model is not None else (options.llm or _default_llm(plpy))
    if llm_name == "extractive":
        llm_name = None

    rows, timings = _retrieve(plpy, question, k, filter_json, pipeline, options.search,
                              p["embedder"])
    result = {"question": question, "mode": None, "answer": None, "citations": [],
              "model": None, "llm": llm_name, "usage": {"prompt_tokens": 0,
                                                        "completion_tokens": 0},
              "grounded": True, "problems": [], "note": None, "llm_error": None}
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
    timings["total"] = (time.perf_counter() - started) * 1000
    result["timings_ms"] = {key: round(value, 1) for key, value in timings.items()}
    result["retrieved"] = [{"chunk_id": r["chunk_id"], "score": r["score"]} for r in rows]
    result["version"] = __version__
    if options.log:
        result["answer_id"] = _log(plpy, pipeline, result)
    return json.dumps(result)


def _generate(plpy, llm_name, question, rows, options, result) -> str:
    """Fills `result` from the LLM; leaves mode None when the extractive answer must be used.
    Returns "error" when the LLM failed and options say so."""
    template = PromptTemplate.from_dict(options.prompt) if options.prompt else None
    prompt = build_prompt(question, [PromptPassage(r["content"], r["title"]) for r in rows],
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
    result["usage"] = {"prompt_tokens": reply.prompt_tokens or 0,
                       "completion_tokens": reply.completion_tokens or 0}
    text = reply.text.strip()
    if is_no_answer(text):
        result.update(mode="no_answer", answer=NO_ANSWER)
        return "done"
    shown = [rows[i] for i in prompt.included]
    grounding = check_grounding(text, [r["content"] for r in shown])
    result["grounded"] = grounding.grounded
    result["problems"] = grounding.problems
    if grounding.grounded or options.guard == "flag":
        result.update(mode="generated", answer=text,
                      citations=[_citation(n, shown[n - 1]) for n in grounding.cited])
        return "done"
    result["generated_answer"] = text
    result["note"] = ("The generated answer was withheld because it is not supported by the "
                      "passages it cites (" + "; ".join(grounding.problems) + "); this answer "
                      "is extractive.")
    return "fallback"


def _log(plpy, pipeline: str, result: dict) -> int:
    entry = {
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
    }
    rows = plpy.execute(prepared(plpy, "SELECT rag._log_answer($1::jsonb) AS id", ["text"]),
                        [json.dumps(entry)])
    return rows[0]["id"]
