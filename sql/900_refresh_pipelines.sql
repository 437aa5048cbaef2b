-- Every install regenerates the capture functions, so a new version's trigger logic reaches
-- existing pipelines, after following any DDL on their sources that happened while no event
-- trigger was watching (rag._refresh_pipeline; a broken pipeline is left as it is).
DO $$
BEGIN
    PERFORM rag._sync_sentence_columns(p.name, s.embedding_set),
        rag._sync_keyword_index(p.name, s.embedding_set)
    FROM rag.pipelines AS p
    CROSS JOIN unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
    PERFORM rag._refresh_pipeline(name) FROM rag.pipelines WHERE broken IS NULL;
END;
$$;
