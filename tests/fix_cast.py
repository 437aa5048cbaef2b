"""The cast of the attack tests (tests/integration/test_attack*.py): LOGIN roles, each with a
connection of its own, as real clients have.

alice owns schema alice_N and its table alice_N.notes (rows 1 and 2); admin is a pipeline
admin and a member of alice; admin2 a pipeline admin who is not; worker a member of
pgask_worker only; bob writes alice's table; reader reads it; nobody and mallory have nothing
but CONNECT. Schema atk (the superuser's) holds the probes, sequences only their grantees
(and superusers) may set, and setval survives any rollback, so nothing pgask rolls back hides
a call: as_superuser (nobody), as_alice and her_flag (alice), as_owner (pgask_owner).
"""

from __future__ import annotations

import itertools
import os

import psycopg
import pytest

_counter = itertools.count()


class Cast:
    ROLES = ("alice", "admin", "admin2", "worker", "bob", "reader", "nobody", "mallory")

    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db
        n = f"{os.getpid()}_{next(_counter)}"
        self.names = {r: f"pgask_a_{r}_{n}" for r in self.ROLES}
        for name in self.names.values():
            db.execute(f"CREATE ROLE {name} LOGIN")
        self.alice = self.names["alice"]
        db.execute(f"GRANT pgask_admin, {self.alice} TO {self.names['admin']}")
        db.execute(f"GRANT pgask_admin TO {self.names['admin2']}")
        db.execute(f"GRANT pgask_worker TO {self.names['worker']}")
        self.schema = f"alice_{n}"
        self.table = f"{self.schema}.notes"
        db.execute(f"CREATE SCHEMA {self.schema} AUTHORIZATION {self.alice}")
        db.execute(f"GRANT USAGE ON SCHEMA {self.schema} TO PUBLIC")
        db.execute("CREATE SCHEMA IF NOT EXISTS atk")
        db.execute("GRANT USAGE ON SCHEMA atk TO PUBLIC")
        for seq in ("as_superuser", "as_alice", "her_flag", "as_owner"):
            db.execute(f"CREATE SEQUENCE IF NOT EXISTS atk.{seq}")
        db.execute(f"GRANT UPDATE, SELECT ON SEQUENCE atk.as_alice TO {self.alice}")
        db.execute(f"GRANT UPDATE, SELECT ON SEQUENCE atk.her_flag TO {self.alice}")
        db.execute("GRANT UPDATE, SELECT ON SEQUENCE atk.as_owner TO pgask_owner")
        info = db.info
        self.conns = {r: psycopg.connect(host=info.host, port=info.port, dbname=info.dbname,
                                         user=name, autocommit=True)
                      for r, name in self.names.items()}
        self.as_("alice", "CREATE TABLE {t} (id int PRIMARY KEY, body text)")
        self.as_("alice", "INSERT INTO {t} VALUES (1, 'Disk full on the primary.'),"
                          " (2, 'Lock waits on the orders table.')")
        self.as_("alice", f"GRANT SELECT, INSERT, UPDATE, DELETE ON {{t}} TO {self.names['bob']}")
        self.as_("alice", f"GRANT SELECT ON {{t}} TO {self.names['reader']}")

    def as_(self, role: str, sql: str, params=None):
        return self.conns[role].execute(sql.format(s=self.schema, t=self.table), params)

    def counter(self, name: str) -> int:
        (value, called) = self.db.execute(
            f"SELECT last_value, is_called FROM atk.{name}").fetchone()
        return value if called else 0

    def rag_source_privileges(self, role: str) -> tuple[bool, bool]:
        return self.db.execute(
            "SELECT has_schema_privilege(%s, 'rag_source', 'USAGE'),"
            " has_schema_privilege(%s, 'rag_source', 'CREATE')",
            (self.names[role], self.names[role])).fetchone()

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.db.execute("DROP SCHEMA IF EXISTS atk CASCADE")
        for name in self.names.values():
            self.db.execute(f"REVOKE ALL ON SCHEMA rag_source FROM {name}")
        for name in reversed(list(self.names.values())):
            self.db.execute(f"DROP OWNED BY {name} CASCADE")
            self.db.execute(f"DROP ROLE {name}")


@pytest.fixture
def cast(db):
    made = Cast(db)
    yield made
    made.close()
