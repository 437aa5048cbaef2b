"""Ordinary (non-superuser) roles for the security tests.

Roles are cluster-wide while each test has a database of its own, so every role gets a name
unique to the test run and is dropped (with what it owns in this database) after the test.
Tests act as a role with `as_role`, which is SET ROLE on the test's superuser connection:
current_user is the role, as it would be for a login of that role.
"""

from __future__ import annotations

import itertools
import os
from contextlib import contextmanager

import psycopg
import pytest

_counter = itertools.count()


class Roles:
    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db
        self.created: list[str] = []

    def make(self, label: str, *grants: str) -> str:
        """A NOLOGIN role named pgask_t_<label>_<pid>_<n>; `grants` are SQL statements with
        {role} for its name, run as the superuser right after it is created."""
        name = f"pgask_t_{label}_{os.getpid()}_{next(_counter)}"
        self.db.execute(f"CREATE ROLE {name} NOLOGIN")
        self.created.append(name)
        for grant in grants:
            self.db.execute(grant.format(role=name))
        return name

    @contextmanager
    def as_role(self, role: str):
        self.db.execute(f"SET ROLE {role}")
        try:
            yield self.db
        finally:
            self.db.execute("RESET ROLE")

    def drop_all(self) -> None:
        self.db.execute("RESET ROLE")
        for name in reversed(self.created):
            self.db.execute(f"DROP OWNED BY {name} CASCADE")
            self.db.execute(f"DROP ROLE {name}")


@pytest.fixture
def roles(db):
    made = Roles(db)
    yield made
    made.drop_all()
