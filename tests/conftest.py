"""The test suite's fixtures, as plugins: each fix_*.py owns its fixtures (and any options or
markers they need). tests/unit/ holds the tests of pure rooms (no database, no server);
tests/integration/ the tests that run SQL against a real PostgreSQL or talk to a loopback
server. Helpers shared by tests (samples.py, the servers) live here, beside this file, which
pytest puts on sys.path."""

pytest_plugins = ["fix_db", "fix_openai", "fix_llm", "fix_rerank", "fix_standby", "fix_citus",
                  "fix_roles", "fix_cast", "fix_shared"]
