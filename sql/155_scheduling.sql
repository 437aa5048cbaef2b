-- Scheduling without a worker process: pg_cron jobs that process a pipeline's queue.

-- rag._cron_spec(every): pg_cron's schedule text for an interval: every minute for intervals
-- under a minute (rag._run_schedule then runs the queue every `every` seconds within the
-- minute: Debian bookworm's pg_cron 1.4 has no second schedules), '*/N * * * *' for whole
-- minutes dividing an hour, '0 */N * * *' for whole hours dividing a day. Anything else is
-- refused (22023): cron cannot express a regular 7-minute or 90-minute period.
CREATE OR REPLACE FUNCTION rag._cron_spec(every interval)
RETURNS text
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    seconds numeric := extract(EPOCH FROM every);
    whole bigint;
BEGIN
    IF every IS NULL OR seconds < 1 OR seconds <> trunc(seconds) THEN
        RAISE EXCEPTION 'rag.schedule: every must be a whole number of seconds, at least 1, '
            'got %', coalesce(every::text, 'NULL')
            USING errcode = 'invalid_parameter_value';
    END IF;
    whole := seconds::bigint;
    IF whole < 60 THEN
        RETURN '* * * * *';
    ELSIF whole < 3600 AND whole % 60 = 0 AND 3600 % whole = 0 THEN
        RETURN format('*/%s * * * *', whole / 60);
    ELSIF whole % 3600 = 0 AND 86400 % whole = 0 THEN
        RETURN format('0 */%s * * *', whole / 3600);
    END IF;
    RAISE EXCEPTION 'rag.schedule: every must be 1 to 59 seconds, whole minutes dividing an '
        'hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30) or whole hours dividing a day, got %',
        every
        USING errcode = 'invalid_parameter_value';
END;
$$;
REVOKE ALL ON FUNCTION rag._cron_spec(interval) FROM public;

-- rag._require_cron(caller): raises 0A000 with what to install when pg_cron is missing here.
CREATE OR REPLACE FUNCTION rag._require_cron(caller text)
RETURNS void
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION '%: the pg_cron extension is not installed in database %', caller,
            current_database()
            USING errcode = 'feature_not_supported',
            hint = 'Install the package postgresql-15-cron on the database server, set '
                'shared_preload_libraries = ''pg_cron'' and cron.database_name = '''
                || current_database() || ''' in postgresql.conf, restart the server and run '
                'CREATE EXTENSION pg_cron here. Or run `pgask worker` next to the database.';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION rag._require_cron(text) FROM public;

-- rag._run_schedule(pipeline, every_seconds): one minute of a sub-minute schedule: processes
-- the queue, commits, sleeps to the next multiple of every_seconds, until the minute is over.
-- (No SET search_path: a procedure with one cannot commit; it pins the path itself.)
CREATE OR REPLACE PROCEDURE rag._run_schedule(pipeline text, every_seconds integer)
LANGUAGE plpgsql
AS $$
DECLARE
    started timestamptz := pg_catalog.clock_timestamp();
    tick integer := 0;
    next_at timestamptz;
    processed bigint;
BEGIN
    -- No SET clause possible: pinned here instead (rag.process_queue pins its own).
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    LOOP
        CALL rag.process_queue(pipeline, max_seconds => every_seconds, processed => processed);
        COMMIT;
        tick := tick + 1;
        next_at := started + pg_catalog.make_interval(secs => tick * every_seconds);
        EXIT WHEN next_at >= started + interval '60 seconds';
        PERFORM pg_catalog.pg_sleep(GREATEST(0, extract(
            EPOCH FROM next_at - pg_catalog.clock_timestamp())));
    END LOOP;
END;
$$;
REVOKE ALL ON PROCEDURE rag._run_schedule(text, integer) FROM public;

-- rag.schedule(pipeline, every): processes the pipeline's queue every interval inside the
-- database, through pg_cron, so no worker process has to run: a job named
-- 'pgask:<pipeline>', run as the calling role, that CALLs rag.process_queue for the pipeline
-- (for intervals under a minute, rag._run_schedule once a minute, which runs it every
-- `every` seconds). Each run stops taking new batches after one interval, and pg_cron never
-- starts a job while its previous run is going, so runs do not pile up. Scheduling a
-- pipeline again changes its interval (one job per pipeline). Returns the pg_cron job id.
-- Without pg_cron: SQLSTATE 0A000 with a hint saying what to install.
CREATE OR REPLACE FUNCTION rag.schedule(pipeline text, every interval DEFAULT '1 minute')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p rag.pipelines := rag._pipeline(pipeline, 'rag.schedule');
    spec text := rag._cron_spec(every);
    seconds bigint := extract(EPOCH FROM every)::bigint;
    job bigint;
BEGIN
    PERFORM rag._require_admin('rag.schedule');
    PERFORM rag._require_cron('rag.schedule');
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
    USING 'pgask:' || p.name, spec,
    CASE
        WHEN seconds < 60 THEN format('CALL rag._run_schedule(%L, %s)', p.name, seconds)
        ELSE format('CALL rag.process_queue(%L, max_seconds => %s)', p.name, seconds)
    END;
    RETURN job;
END;
$$;

-- rag.unschedule(pipeline): removes the pipeline's pg_cron job; false when there was none
-- (or pg_cron is not installed). The pipeline need not exist any more.
CREATE OR REPLACE FUNCTION rag.unschedule(pipeline text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed boolean := false;
BEGIN
    IF pipeline IS NULL THEN
        RAISE EXCEPTION 'rag.unschedule: pipeline must be a pipeline name, got NULL'
            USING errcode = 'invalid_parameter_value';
    END IF;
    PERFORM rag._require_admin('rag.unschedule');
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT bool_or(cron.unschedule(jobid)) FROM cron.job WHERE jobname = $1'
    INTO removed USING 'pgask:' || pipeline;
    RETURN coalesce(removed, false);
END;
$$;
