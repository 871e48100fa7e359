-- Open alarms are updated in place all the time: every repeat folds into the open alarm of its
-- kind (count, last_seen_at, last_seq). Such an update changes no indexed column, so PostgreSQL
-- can make it a HOT update (no new index entries, old versions pruned on the page) when the
-- row's page has room. With the default fillfactor of 100 the pages fill up with new alarms, so
-- most repeats became ordinary updates, each adding an entry to every index of the table that
-- later lookups (by id, by fold key, the open-alarm uniqueness check) had to walk past until
-- it was cleaned up. Half of each page is left free for the new versions of its alarms.
-- Applies to pages written from now on; existing pages fill as they are rewritten.
ALTER TABLE alarms SET (fillfactor = 50);
