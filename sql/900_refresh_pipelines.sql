-- Every install regenerates the capture functions, so a new version's trigger logic reaches
-- existing pipelines.
DO $$
BEGIN
    PERFORM rag._sync_keyword_index(p.name, s.embedding_set)
    FROM rag.pipelines AS p
    CROSS JOIN unnest(array_remove(ARRAY[p.active_set, p.building_set], NULL)) AS s (embedding_set);
    PERFORM rag._install_capture(name) FROM rag.pipelines;
END;
$$;
