-- Tickets: questions humans file in the external arena; an approved answer closes one.
CREATE TABLE tickets (
    id                 bigserial PRIMARY KEY,
    title              text NOT NULL,
    body               text NOT NULL,
    filed_by           bigint NOT NULL REFERENCES principals (id),
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    answer_proposal_id bigint REFERENCES proposals (id),
    human_intervention boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    closed_at          timestamptz
);
