-- Rate limits shared by every worker of the outbox (src/delivery/rate_ledger.rs): one row per
-- batch of permits a worker took for a provider. A row counts in a window of length L checked
-- at `now` while `until > now - L`; a worker that is done with a batch lowers `units` to those
-- it used and `until` to the time it finished. Times are milliseconds since the Unix epoch.
CREATE TABLE rate_grants (
    id         INTEGER PRIMARY KEY,
    provider   TEXT    NOT NULL,
    granted_at INTEGER NOT NULL,
    until      INTEGER NOT NULL,
    units      INTEGER NOT NULL CHECK (units >= 0)
);

CREATE INDEX rate_grants_by_provider ON rate_grants (provider, until);
