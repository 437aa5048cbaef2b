"""pgask: retrieval-augmented generation inside PostgreSQL.

The same code runs in two places: inside the database (PL/Python functions import it from the
versioned site directory) and in the `pgask` command line tool.
"""

__version__ = "0.1.0"
