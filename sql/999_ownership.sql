-- The rest of the hand-over to pgask_owner (sql/001_ownership.sql): everything the sql/
-- files created in this install.
SELECT rag._take_ownership();
