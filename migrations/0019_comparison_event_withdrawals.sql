-- A comparison event recorded in error is withdrawn, never deleted: a row here names it, with
-- the reason, who and when. Reports as known from `recorded_at` on leave the event out; reports
-- as known before keep it, so a stored report still reproduces (src/outcomes/comparison.rs).
CREATE TABLE comparison_event_withdrawals (
    event_id    bigint PRIMARY KEY REFERENCES comparison_events (id),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    recorded_by integer NOT NULL REFERENCES users (id),
    recorded_at timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER comparison_event_withdrawals_append_only
    BEFORE UPDATE OR DELETE ON comparison_event_withdrawals
    FOR EACH ROW EXECUTE FUNCTION homeward_refuse_change();
