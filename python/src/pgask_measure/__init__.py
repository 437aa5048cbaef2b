"""Measurement of pgask, outside the server's package: `pgask bench` (speed, next to same-run
baselines) and `pgask eval` / `pgask eval-answers` (retrieval and answer quality).

PL/Python never imports this package, so editing a benchmark does not change the server's
libraries (scripts/install.sh stamps python/src/pgask only). It uses pgask like any client.
"""
