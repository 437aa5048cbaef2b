-- rag._python_init(): makes the pgask package importable in this backend, once.
-- The preamble `pgask install` injects into every PL/Python body calls it before `import
-- pgask`, so nobody has to set PYTHONPATH:
-- the versioned site directory is recorded in rag.settings by `pgask install`.
-- PGASK_PYTHONPATH in the server's environment (development, tests) is searched first.
CREATE OR REPLACE FUNCTION rag._python_init()
RETURNS text
LANGUAGE plpython3u
SET search_path = pg_catalog, pg_temp
AS $$
import os
import sys

if "pgask_version" in GD:
    return GD["pgask_version"]
rows = plpy.execute("SELECT value FROM rag.settings WHERE key = 'python_site'")
paths = [p for p in os.environ.get("PGASK_PYTHONPATH", "").split(os.pathsep) if p]
if rows:
    paths.append(rows[0]["value"])
# In this order at the front, even where PYTHONPATH already put one of them further back.
sys.path[:] = paths + [p for p in sys.path if p not in paths]
try:
    import pgask
except ImportError as exc:
    plpy.error(
        "pgask: cannot import the pgask Python package (%s)" % exc,
        detail="searched: %s" % (", ".join(paths) or "no site directory recorded"),
        hint="Run `make setup` on the database server, then `pgask install`.",
    )
# Whether this database's backends embed through the shared model process (default on).
from pgask.embedders import shared_process
setting = plpy.execute("SELECT value FROM rag.settings WHERE key = 'embedding_service'")
shared_process.configure(setting[0]["value"] if setting else None)
GD["pgask_version"] = pgask.__version__
return pgask.__version__
$$;
