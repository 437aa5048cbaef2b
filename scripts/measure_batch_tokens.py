"""How many word pieces the local model should embed per forward pass
(`LocalEmbedder.batch_tokens`).

Embeds the chunks of the first manual pages `make bench` ingests with each budget,
alternating budgets round by round so a slower minute of the machine hits all of them, and
prints each one's median and fastest time. Texts are sorted by length before batching (as
the embedder does), so a smaller batch also pads less. A budget of 4,096 pieces is what 16
rows of full chunks took before budgets.

    python scripts/measure_batch_tokens.py --pages 40 --rounds 6 --budgets 4096,1024,512,256
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "src"))

from pgask.embedders.local import LocalEmbedder  # noqa: E402
from pgask_measure.bench.common import chunk_inputs, manual_pages  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=40, help="manual pages (default 40)")
    parser.add_argument("--rounds", type=int, default=6, help="timings of each (default 6)")
    parser.add_argument("--budgets", default="4096,1024,512,256",
                        help="word pieces per pass, comma-separated (default 4096,1024,512,256)")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    texts = chunk_inputs([page.content for page in manual_pages(args.pages)])
    embedder = LocalEmbedder()
    embedder.embed(["warm up"])
    times: dict[int, list[float]] = {budget: [] for budget in budgets}
    for _ in range(args.rounds):
        for budget in budgets:
            embedder.batch_tokens = budget
            started = time.perf_counter()
            embedder.embed(texts)
            times[budget].append(time.perf_counter() - started)
    print(f"{len(texts)} chunks, {args.rounds} rounds each")
    base = statistics.median(times[budgets[0]])
    for budget in budgets:
        median = statistics.median(times[budget])
        print(f"{budget:5d} pieces: median {median:6.2f} s ({median / base:.2f}x {budgets[0]}),"
              f" fastest {min(times[budget]):6.2f} s")


if __name__ == "__main__":
    main()
