from fix_db import db, db_url, empty_db_url, postgresql, postgresql_proc  # noqa: F401
