-- What each agent last said of the parts its turns need: the LLM backend it speaks to (the
-- model, slots busy) and its memory (ChromaDB), for the console's Health tab.
ALTER TABLE agent_states
    ADD COLUMN backend text NOT NULL DEFAULT '',
    ADD COLUMN memory  text NOT NULL DEFAULT '';
