"""Renaming a column inside a pipeline's SQL fragments: only real column references change."""

from pgask.source_columns import references, rename


def test_rename_qualified_and_unqualified_references():
    assert rename("s.body", "body", "text_body") == "s.text_body"
    assert rename("(subject || E'\\n\\n' || body)", "body", "Body") == (
        "(subject || E'\\n\\n' || \"Body\")")
    assert rename('coalesce((s."Title")::text, \'\')', "Title", "heading") == (
        "coalesce((s.heading)::text, '')")


def test_rename_leaves_literals_functions_types_and_other_qualifiers_alone():
    sql = ("jsonb_build_object('team', s.team) || jsonb_build_object($$team$$, t.team)"
           " || team(x)::team -- team\n")
    assert rename(sql, "team", "squad") == (
        "jsonb_build_object('team', s.squad) || jsonb_build_object($$team$$, t.team)"
        " || team(x)::team -- team\n")


def test_escaped_quotes_do_not_end_a_literal_early():
    assert rename("'it''s body' || body", "body", "b") == "'it''s body' || b"
    assert rename("E'a\\'body' || body", "body", "b") == "E'a\\'body' || b"


def test_references_fold_unquoted_names():
    assert references("(Subject || s.\"Body\" || k.document_id::integer)",
                      {"subject", "Body", "document_id", "integer"}) == {"subject", "Body"}
