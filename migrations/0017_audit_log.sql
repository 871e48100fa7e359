-- The audit log: one row per change a person or service makes through the API or the CLI,
-- written in the transaction of the change (src/audit). Append-only, and hash-chained per
-- organisation so that an edited, deleted or reordered row is found by `homeward audit verify`
-- or by anyone holding an export (docs/audit.md gives the format).
--
-- One chain per organisation (chain 0 for rows that belong to no organisation): a tenant's
-- auditor can verify its own chain from its own export without seeing other tenants' rows, and
-- writers of different tenants never wait for each other's lock on the chain's head.

CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The organisation whose chain holds the row: organisation_id, or 0.
    chain           integer NOT NULL,
    -- Position in the chain, 1, 2, 3, ... without gaps.
    seq             bigint NOT NULL,
    -- Set by the trigger when the row takes its place in the chain (not by the writer).
    at              timestamptz NOT NULL,
    actor_kind      text NOT NULL CHECK (actor_kind IN ('user', 'person', 'device', 'system')),
    -- A user's id, the person's confirmation link ("link:<id>"), a device's uid, or the
    -- component ("cli:<operating-system user>") for system rows.
    actor           text NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    -- The API token the user acted with (NULL for a console session or a system row).
    token_id        integer,
    -- The organisation of the actor (a commissioner verifying a provider's record).
    actor_org       integer,
    -- The organisation the object belongs to; NULL for platform rows.
    organisation_id integer,
    action          text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    object_type     text NOT NULL CHECK (object_type ~ '^[a-z_]+$'),
    object_id       text NOT NULL CHECK (length(object_id) BETWEEN 1 AND 200),
    -- JSON text, stored as the exact bytes that were hashed (jsonb would reorder them).
    change          text NOT NULL CHECK (change::jsonb IS NOT NULL),
    request_id      text CHECK (length(request_id) BETWEEN 1 AND 100),
    prev_hash       bytea NOT NULL,
    hash            bytea NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_log_org_idx ON audit_log (organisation_id, id);
CREATE INDEX audit_log_actor_org_idx ON audit_log (actor_org, id);
CREATE INDEX audit_log_object_idx ON audit_log (object_type, object_id);

-- The last row of each chain, so that a deleted last row is found too.
CREATE TABLE audit_heads (
    chain integer PRIMARY KEY,
    seq   bigint NOT NULL,
    hash  bytea NOT NULL
);

-- The canonical bytes of a row: each field as its length in bytes, a colon, the field and a
-- newline, in this order. NULL is the empty field; times are microseconds since 1970 UTC;
-- hashes are lower-case hex.
CREATE FUNCTION homeward_audit_canonical(r audit_log) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(string_agg(octet_length(f)::text || ':' || f || E'\n', '' ORDER BY n), 'UTF8')
      FROM unnest(ARRAY[
               'homeward-audit-v1',
               r.chain::text,
               r.seq::text,
               (extract(epoch FROM r.at) * 1000000)::bigint::text,
               r.actor_kind,
               r.actor,
               coalesce(r.token_id::text, ''),
               coalesce(r.actor_org::text, ''),
               coalesce(r.organisation_id::text, ''),
               r.action,
               r.object_type,
               r.object_id,
               r.change,
               coalesce(r.request_id, ''),
               encode(r.prev_hash, 'hex')
           ]) WITH ORDINALITY AS t(f, n)
$$;

-- Places a new row at the end of its chain. SECURITY DEFINER: the application may insert
-- audit rows but never write the heads itself.
CREATE FUNCTION homeward_audit_chain() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    head audit_heads;
BEGIN
    NEW.chain := coalesce(NEW.organisation_id, 0);
    INSERT INTO audit_heads (chain, seq, hash)
         VALUES (NEW.chain, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
    ON CONFLICT (chain) DO NOTHING;
    SELECT * INTO head FROM audit_heads WHERE chain = NEW.chain FOR UPDATE;
    NEW.seq := head.seq + 1;
    NEW.prev_hash := head.hash;
    -- After the lock, so that times rise with seq within a chain.
    NEW.at := clock_timestamp();
    NEW.hash := sha256(homeward_audit_canonical(NEW));
    UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash WHERE chain = NEW.chain;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION homeward_audit_chain();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION homeward_refuse_change();
CREATE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
    FOR EACH STATEMENT EXECUTE FUNCTION homeward_refuse_change();
