-- Rate limits shared by every worker of the outbox (src/delivery/rate_ledger.rs): one row per
-- batch of permits a worker took for a provider. A row counts in a window of length L checked
-- at `now` while `until > now - L`; a worker that is done with a batch lowers `units` to those
-- it used and `until` to the time it finished. Unlike the other tables' times, these are the
-- database server's clock (milliseconds since the Unix epoch), so that workers whose clocks
-- disagree by a little still share one window. Grants of a provider are taken one transaction
-- at a time, under a transaction-level advisory lock on the provider's name.
CREATE TABLE rate_grants (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider   TEXT    NOT NULL,
    granted_at BIGINT  NOT NULL,
    until      BIGINT  NOT NULL,
    units      BIGINT  NOT NULL CHECK (units >= 0)
);

CREATE INDEX rate_grants_by_provider ON rate_grants (provider, until);
