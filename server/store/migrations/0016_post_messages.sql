-- post_messages stores a batch of one room's messages as a set: one lock, one look-up of
-- the room and of its last id, one look-up of the batch's duplicates and mutes, and one
-- multi-row INSERT, where post_message does all of that once per message. It answers
-- one row per draft, in the order given, exactly as post_message would have answered
-- each in turn: the checks come in the same order (duplicate, muted, unknown_room,
-- paused, bad_reply), the stored ones get ids in the order given, and each stored
-- message's prev_id is the room's message before it (an earlier one of the batch, or
-- the room's last before the batch). Two drafts of the batch with the same author and
-- client id break the unique constraint: the caller stores such a batch one message at
-- a time. Its plan is the generic one: planning the statement anew for each batch (the
-- custom plans PostgreSQL tries first) cost more than storing the batch.

CREATE FUNCTION post_messages(
    p_room text, p_authors bigint[], p_texts text[], p_reply_tos bigint[],
    p_client_ids text[], p_may_post_when_paused boolean[]
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
        FROM unnest(p_authors, p_texts, p_reply_tos, p_client_ids, p_may_post_when_paused)
             WITH ORDINALITY AS d(author, text, reply_to, client_id, may_post, ord)
        LEFT JOIN LATERAL (  -- by the unique index: the plan is kept, whatever the table's size
            SELECT m.id, m.created_at FROM messages m
            WHERE m.author_id = d.author AND m.client_id = d.client_id
            ORDER BY m.author_id, m.client_id LIMIT 1
        ) dup ON true
    ), stored AS (
        INSERT INTO messages (room, author_id, text, reply_to, client_id)
        SELECT p_room, d.author, d.text, d.reply_to, d.client_id
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
