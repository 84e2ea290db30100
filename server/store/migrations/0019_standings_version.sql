-- The standings (server/store/reputation.py) are computed from the proposals, the
-- reactions, the room memberships and the principals. Every committed change to one of
-- them moves standings_version, so that a process keeps the standings it computed for
-- as long as the version it read them with is the current one: an agent's every send in
-- the external arena checks its seat, and computing the standings aggregates every
-- proposal and every reaction (91 ms with 200,000 reactions, against 0.4 ms for a look
-- at the version). The version moves once a transaction, at its commit (a deferred
-- trigger): the last lock a transaction takes, so that waiting for it cannot deadlock.

CREATE TABLE standings_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO standings_version VALUES (true, 0);

CREATE FUNCTION standings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- once a transaction, however many rows it changed
    IF current_setting('botarena.standings_moved', true) = txid_current()::text THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('botarena.standings_moved', txid_current()::text, true);
    UPDATE standings_version SET version = version + 1;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER proposals_standings
    AFTER INSERT OR UPDATE OR DELETE ON proposals DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION standings_changed();
CREATE CONSTRAINT TRIGGER reactions_standings
    AFTER INSERT OR UPDATE OR DELETE ON reactions DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION standings_changed();
CREATE CONSTRAINT TRIGGER room_members_standings
    AFTER INSERT OR UPDATE OR DELETE ON room_members DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION standings_changed();
CREATE CONSTRAINT TRIGGER principals_standings
    AFTER INSERT OR UPDATE OR DELETE ON principals DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION standings_changed();
