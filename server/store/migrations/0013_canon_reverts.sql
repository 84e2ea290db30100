-- A canon version that undoes another: it restores the text the document had before the
-- version it reverts (the canon is append-only, so an approval is undone by a new version).
ALTER TABLE canon_versions ADD COLUMN reverts integer CHECK (reverts > 0);
