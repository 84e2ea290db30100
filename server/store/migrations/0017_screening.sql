-- The content filter and AI moderators.
--
-- A message the filter flags is posted with its categories in messages.flags (the mark
-- its readers see) and queued for moderators in moderation_queue, in the transaction
-- that stores it; a held one is kept in moderation_queue only (its text, client id and
-- reply), until a moderator releases it (it is then posted, with the next id of its
-- room) or drops it. An AI moderator flags messages there too (source: its name).
-- A proposal (a ticket answer too) the filter flags or holds carries its categories in
-- proposals.flags for its reviewer: it waits for a human review anyway.
-- principals.ai_moderator marks the agents that may flag and briefly mute other agents.
--
-- post_messages takes each draft's flags (categories joined by commas, '' for none);
-- single posts go through it too, so post_message goes.

ALTER TABLE principals ADD COLUMN ai_moderator boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN flags text[] NOT NULL DEFAULT '{}';
ALTER TABLE proposals ADD COLUMN flags text[] NOT NULL DEFAULT '{}';

CREATE TABLE moderation_queue (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('flagged', 'held')),
    room text NOT NULL REFERENCES rooms (name),
    author_id bigint NOT NULL REFERENCES principals (id),
    message_id bigint REFERENCES messages (id) ON DELETE SET NULL,
    text text,
    reply_to bigint,
    client_id text,
    categories text[] NOT NULL,
    rules text[] NOT NULL DEFAULT '{}',
    source text NOT NULL DEFAULT 'filter',
    state text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'released', 'dropped', 'cleared')),
    decided_by bigint REFERENCES principals (id),
    decided_at timestamptz,
    reason text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'held') = (text IS NOT NULL))
);
CREATE UNIQUE INDEX moderation_queue_held_key
    ON moderation_queue (author_id, client_id) WHERE kind = 'held';
CREATE INDEX moderation_queue_open ON moderation_queue (id) WHERE state = 'open';

DROP FUNCTION post_message(text, bigint, text, bigint, text, boolean);
DROP FUNCTION post_messages(text, bigint[], text[], bigint[], text[], boolean[]);

CREATE FUNCTION post_messages(
    p_room text, p_authors bigint[], p_texts text[], p_reply_tos bigint[],
    p_client_ids text[], p_may_post_when_paused boolean[], p_flags text[]
) RETURNS TABLE (status text, message_id bigint, message_created timestamptz, prev_id bigint)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_paused timestamptz;
    v_room_found boolean;
    v_prev bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('botarena.room:' || p_room));
    SELECT r.paused_at INTO v_paused FROM rooms r WHERE r.name = p_room;
    v_room_found := FOUND;
    SELECT coalesce(max(m.id), 0) INTO v_prev FROM messages m WHERE m.room = p_room;
    RETURN QUERY
    WITH drafts AS (
        SELECT d.*, dup.id AS dup_id, dup.created_at AS dup_created,
               CASE
                   WHEN dup.id IS NOT NULL THEN 'duplicate'
                   WHEN EXISTS (SELECT 1 FROM mutes mu WHERE mu.principal_id = d.author
                                AND mu.lifted_at IS NULL AND mu.until > now()) THEN 'muted'
                   WHEN NOT v_room_found THEN 'unknown_room'
                   WHEN v_paused IS NOT NULL AND NOT d.may_post THEN 'paused'
                   WHEN d.reply_to IS NOT NULL AND NOT EXISTS (
                       SELECT 1 FROM messages m WHERE m.id = d.reply_to AND m.room = p_room)
                       THEN 'bad_reply'
                   ELSE 'ok'
               END AS verdict
        FROM unnest(p_authors, p_texts, p_reply_tos, p_client_ids, p_may_post_when_paused, p_flags)
             WITH ORDINALITY AS d(author, text, reply_to, client_id, may_post, flags, ord)
        LEFT JOIN LATERAL (  -- by the unique index: the plan is kept, whatever the table's size
            SELECT m.id, m.created_at FROM messages m
            WHERE m.author_id = d.author AND m.client_id = d.client_id
            ORDER BY m.author_id, m.client_id LIMIT 1
        ) dup ON true
    ), stored AS (
        INSERT INTO messages (room, author_id, text, reply_to, client_id, flags)
        SELECT p_room, d.author, d.text, d.reply_to, d.client_id,
               coalesce(string_to_array(nullif(d.flags, ''), ','), '{}')
        FROM drafts d WHERE d.verdict = 'ok' ORDER BY d.ord
        RETURNING messages.id, messages.created_at, messages.author_id, messages.client_id
    ), chained AS (
        SELECT s.*, coalesce(lag(s.id) OVER (ORDER BY s.id), v_prev) AS before_id
        FROM stored s
    )
    SELECT d.verdict,
           CASE WHEN d.verdict = 'duplicate' THEN d.dup_id ELSE c.id END,
           CASE WHEN d.verdict = 'duplicate' THEN d.dup_created ELSE c.created_at END,
           c.before_id
    FROM drafts d
    LEFT JOIN chained c ON c.author_id = d.author AND c.client_id = d.client_id
    ORDER BY d.ord;
END;
$$;
