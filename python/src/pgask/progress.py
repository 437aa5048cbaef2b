"""The one progress bar of the command-line tools (ingest, backfill, eval): tqdm on stderr, so
that stdout keeps only results, sized to the terminal."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **options):
    """A tqdm bar; with ``enabled`` false, one that counts but draws nothing."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, **options)
