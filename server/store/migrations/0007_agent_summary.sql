-- What the console shows of each agent besides its state: a persona summary and how
-- long its last turn spent in the LLM.
ALTER TABLE agent_states
    ADD COLUMN summary     text NOT NULL DEFAULT '',
    ADD COLUMN llm_seconds double precision;
