-- Row-level security on the tenant tables, and the functions through which the service role
-- maintains raw-event partitions without owning them.
--
-- Roles and their privileges are not created here: roles belong to the cluster, not to this
-- database, and an external database's operator creates them (docs/operations.md). The runner
-- grants them their privileges after every migration run (src/db/grants.sql), so tables added
-- by later migrations get them too. Policies apply to every role without BYPASSRLS that does
-- not own the table: the request path's `homeward_app`; the owner (which runs migrations and
-- admin commands) and the service role `homeward_service` (ingest, derivations) pass through.

-- The organisations this session may see: `homeward.orgs`, a comma-separated list of ids that
-- the request path sets at each connection checkout from the caller's credential. Unset or
-- empty (a connection nobody set, or one the pool reset): no organisation, so no rows.
CREATE FUNCTION homeward_orgs() RETURNS integer[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT string_to_array(nullif(current_setting('homeward.orgs', true), ''), ',')::integer[]
$$;

-- Which organisations a caller from `org` may see: its own, and, for a commissioner, the
-- providers it contracts. SECURITY DEFINER because it must read `contracts` before the session
-- has an organisation set (and so before the policy on `contracts` lets it see anything).
CREATE FUNCTION homeward_visible_orgs(org integer) RETURNS integer[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT array_agg(o ORDER BY o)
      FROM (SELECT org AS o UNION SELECT provider_id FROM contracts WHERE commissioner_id = org) s
$$;

-- Turns on row-level security for `tbl` with one policy, `homeward_tenant`: a row is visible
-- and writable when any of `keys` (organisation columns) is among homeward_orgs(). A row whose
-- key is NULL (a platform row) is visible to no caller on the request path. `(SELECT ...)`
-- makes PostgreSQL read the setting once per query, not once per row. Idempotent.
-- Usage: SELECT homeward_tenant_policy('audit_log', 'organisation_id');
CREATE FUNCTION homeward_tenant_policy(tbl regclass, VARIADIC keys text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    cond text;
BEGIN
    SELECT string_agg(format('%I = ANY ((SELECT homeward_orgs())::integer[])', k), ' OR ')
      INTO STRICT cond FROM unnest(keys) k;
    IF cond IS NULL THEN
        RAISE EXCEPTION 'homeward_tenant_policy(%): name at least one organisation column', tbl;
    END IF;
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS homeward_tenant ON %s', tbl);
    EXECUTE format('CREATE POLICY homeward_tenant ON %s USING (%s) WITH CHECK (%s)',
                   tbl, cond, cond);
END
$$;

SELECT homeward_tenant_policy(t::regclass, 'organisation_id')
  FROM unnest(ARRAY[
      'users', 'people', 'workers', 'devices', 'dead_letters',
      'evv_area_policies', 'scheduled_visits', 'visit_adjustments', 'visits', 'missed_visit_alerts',
      'alarms', 'alarm_actions', 'alarm_events', 'device_health',
      'service_periods', 'hospital_stays', 'reablement_episodes', 'care_home_admissions', 'deaths',
      'recorded_falls', 'outcome_plans', 'outcome_reports'
  ]) t;
SELECT homeward_tenant_policy('contracts', 'commissioner_id', 'provider_id');
-- The audit log (migration 0017), where it exists: platform rows (no organisation) are the
-- owner's and the service role's to read.
DO $$
BEGIN
    IF to_regclass('audit_log') IS NOT NULL THEN
        PERFORM homeward_tenant_policy(to_regclass('audit_log'), 'organisation_id');
    END IF;
END
$$;

-- A commissioner's populations and comparison cohorts are inputs of the statements it pays on,
-- which the providers it contracts read too: visible to the commissioner and to the parties of
-- its contracts (the subquery is itself filtered by the policy on `contracts`); written only by
-- the commissioner.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['commissioner_populations', 'comparison_cohorts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY homeward_tenant ON %I
                          USING (commissioner_id = ANY ((SELECT homeward_orgs())::integer[])
                                 OR commissioner_id IN (SELECT commissioner_id FROM contracts))
                          WITH CHECK (commissioner_id = ANY ((SELECT homeward_orgs())::integer[]))', t);
    END LOOP;
END
$$;

-- Reached through their contract: visible when the contract is (the subquery is itself
-- filtered by the policy on `contracts`).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['contract_terms', 'payment_statements', 'payment_ledger'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY homeward_tenant ON %I
                          USING (contract_id IN (SELECT id FROM contracts))
                          WITH CHECK (contract_id IN (SELECT id FROM contracts))', t);
    END LOOP;
END
$$;

-- Partition maintenance (native storage), for the service role, which may insert raw events
-- but not drop, delete or create tables. Each refuses a table that is not a time-series table.

-- Creates `tbl`'s partition for `day` (UTC) unless it exists, moving rows of that day that
-- already landed in the DEFAULT partition into it. `part_name` is the partition's name, or NULL
-- when it existed; `moved` is the number of rows moved.
CREATE FUNCTION homeward_add_partition(tbl text, day date, OUT part_name text, OUT moved bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    col text;
    from_ts timestamptz := (day::text || ' 00:00:00+00')::timestamptz;
    to_ts timestamptz := ((day + 1)::text || ' 00:00:00+00')::timestamptz;
BEGIN
    SELECT time_column INTO col FROM homeward_timeseries_tables WHERE table_name = tbl;
    IF col IS NULL THEN
        RAISE EXCEPTION '% is not a time-series table', tbl;
    END IF;
    part_name := tbl || '_p' || to_char(day, 'YYYYMMDD');
    moved := 0;
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = tbl::regclass AND c.relname = part_name) THEN
        part_name := NULL;
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part_name, tbl);
    -- PostgreSQL refuses to attach a partition whose range DEFAULT still holds rows of.
    EXECUTE format('WITH m AS (DELETE FROM %I WHERE %I >= $1 AND %I < $2 RETURNING *)
                    INSERT INTO %I SELECT * FROM m',
                   tbl || '_default', col, col, part_name)
       USING from_ts, to_ts;
    GET DIAGNOSTICS moved = ROW_COUNT;
    EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   tbl, part_name, from_ts, to_ts);
END
$$;

-- Retention: drops `tbl`'s daily partitions of days before `cutoff` and deletes the DEFAULT
-- partition's rows before it. Returns the names of the partitions dropped.
CREATE FUNCTION homeward_drop_partitions_before(tbl text, cutoff date) RETURNS text[]
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    col text;
    part text;
    dropped text[] := ARRAY[]::text[];
BEGIN
    SELECT time_column INTO col FROM homeward_timeseries_tables WHERE table_name = tbl;
    IF col IS NULL THEN
        RAISE EXCEPTION '% is not a time-series table', tbl;
    END IF;
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = tbl::regclass
           AND CASE WHEN c.relname ~ ('^' || tbl || '_p[0-9]{8}$')
                    THEN to_date(right(c.relname, 8), 'YYYYMMDD') < cutoff
                    ELSE false END
         ORDER BY 1
    LOOP
        EXECUTE format('DROP TABLE %I', part);
        dropped := dropped || part;
    END LOOP;
    EXECUTE format('DELETE FROM %I WHERE %I < $1', tbl || '_default', col)
       USING (cutoff::text || ' 00:00:00+00')::timestamptz;
    RETURN dropped;
END
$$;

-- Retention (TimescaleDB): sets `tbl`'s retention policy to `days`, replacing one with another
-- interval. Only the owner of a hypertable may change its policies.
CREATE FUNCTION homeward_set_retention(tbl text, days integer) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    wanted text := days || ' days';
    current_policy text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM homeward_timeseries_tables WHERE table_name = tbl) THEN
        RAISE EXCEPTION '% is not a time-series table', tbl;
    END IF;
    SELECT config->>'drop_after' INTO current_policy FROM timescaledb_information.jobs
     WHERE proc_name = 'policy_retention' AND hypertable_name = tbl;
    IF current_policy IS NOT DISTINCT FROM wanted THEN
        RETURN;
    END IF;
    IF current_policy IS NOT NULL THEN
        PERFORM remove_retention_policy(tbl::regclass, if_exists => true);
    END IF;
    PERFORM add_retention_policy(tbl::regclass, drop_after => wanted::interval);
END
$$;

-- Only the roles granted it (src/db/grants.sql) may call these.
REVOKE EXECUTE ON FUNCTION homeward_add_partition(text, date),
                           homeward_drop_partitions_before(text, date),
                           homeward_set_retention(text, integer),
                           homeward_visible_orgs(integer),
                           homeward_tenant_policy(regclass, text[])
    FROM PUBLIC;
