"""Retrieval: filters, BM25 and vector candidates, fusion, reranking (rag.search)."""
