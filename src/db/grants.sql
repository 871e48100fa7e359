-- What Homeward's two runtime roles may do. Run by the database's owner after every migration
-- run (`homeward migrate`, and each start of `homeward serve`), so a table a later migration
-- adds gets its grants at once; `homeward migrate --print-grants` prints it for operators.
-- Idempotent: every table's grants are first revoked, then granted again.
--
--  * homeward_app (the request path: API and console) and homeward_service (ingest, derivations,
--    the live relay, credential checks, maintenance) may read and write the tables;
--  * the append-only tables (raw events, the audit log, comparison-event withdrawals) take
--    INSERT and SELECT only: no UPDATE, DELETE or TRUNCATE, for either role;
--  * the migration bookkeeping and the audit chains' heads (written only by the chain
--    trigger, a SECURITY DEFINER function) are read-only;
--  * partitions are not granted anything: rows are reached through their parent table, and
--    only the owner's SECURITY DEFINER maintenance functions create or drop them, which only
--    homeward_service may call.
-- Neither role owns anything, so neither can ALTER or DROP a table. Row-level security
-- (migration 0018) applies to homeward_app; homeward_service has BYPASSRLS.
DO $grants$
DECLARE
    t record;
    roles constant text := 'homeward_app, homeward_service';
BEGIN
    EXECUTE 'GRANT USAGE ON SCHEMA public TO ' || roles;
    FOR t IN
        SELECT c.oid::regclass AS rel, c.relname AS name
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
           AND NOT c.relispartition
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', t.rel, roles);
        IF t.name IN ('events', 'audit_log', 'comparison_event_withdrawals') THEN
            EXECUTE format('GRANT SELECT, INSERT ON %s TO %s', t.rel, roles);
        ELSIF t.name IN ('homeward_migrations', 'homeward_storage', 'homeward_timeseries_tables',
                         'audit_heads') THEN
            EXECUTE format('GRANT SELECT ON %s TO %s', t.rel, roles);
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %s', t.rel, roles);
        END IF;
    END LOOP;
    EXECUTE 'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ' || roles;
    EXECUTE 'GRANT EXECUTE ON FUNCTION homeward_visible_orgs(integer) TO ' || roles;
    EXECUTE 'GRANT EXECUTE ON FUNCTION homeward_add_partition(text, date),
                                       homeward_drop_partitions_before(text, date),
                                       homeward_set_retention(text, integer)
             TO homeward_service';
END
$grants$;
