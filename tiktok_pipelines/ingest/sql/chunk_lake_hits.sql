-- The lake's copies of the chunk's valid ids (`chunk_ids`), from the partitions within the allowed
-- lateness of the chunk's dates. Only the ids probe it: a hash of the chunk's ids, the partitions'
-- event_id and hash columns stream past it. The rows of this very batch are left out: a plan
-- finished a second time (its writer died after committing some tables) must judge its lines
-- exactly as the first try did. any_value: one row per id even if the lake ever held two copies.
CREATE TEMP TABLE lake_hits AS
SELECT p.event_id, any_value(p._payload_hash) AS payload_hash
FROM (SELECT event_id, _payload_hash FROM ${source} WHERE _batch_id <> '${batch_id}') p
SEMI JOIN chunk_ids USING (event_id)
GROUP BY p.event_id
