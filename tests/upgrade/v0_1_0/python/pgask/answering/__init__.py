"""Turning retrieved passages into an answer with citations."""
