"""pgask: retrieval-augmented generation inside PostgreSQL.

The same code runs in two places: inside the database (PL/Python functions import it from the
versioned site directory) and in the `pgask` command line tool.
"""

from pgask._version import read_version

# The release number lives in one place, python/pyproject.toml (scripts/install.sh names the
# site directory after it too); this reads it from there or from the installed metadata.
__version__ = read_version()


def __getattr__(name: str):
    # pgask.Client without importing psycopg for the PL/Python bodies, which never use it.
    if name == "Client":
        from pgask.client import Client

        return Client
    if name == "AsyncClient":
        from pgask.async_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'pgask' has no attribute {name!r}")
