-- The outcome of each duplicate candidate of the chunk: its first copy goes to the lake, a later
-- copy with the same payload hash is a duplicate, one with another hash a conflict. Duplicates
-- are rare: only the ids that occur twice in the chunk or were seen before are ranked.
--
-- Ids are compared as their 64-bit hashes first and as strings only where the hashes match:
-- `seen` holds every id this batch has put in the lake so far (millions in a backfill), and an
-- integer probe of each of its rows costs a fraction of a string's.
CREATE TEMP TABLE judged AS
WITH valid AS (
    SELECT event_id, hash(event_id) AS id_hash, src_file_idx, src_line, payload_hash FROM v WHERE reason IS NULL
),
-- `seen` grows with every chunk of a large batch: hash the chunk and scan `seen` once,
-- never build a hash table over `seen` (that made big backfills quadratic).
seen_candidates AS (
    SELECT s.event_id, s.payload_hash FROM seen s SEMI JOIN valid USING (id_hash)
),
-- An id both in the lake (outside an earlier chunk's window) and in `seen`: the lake's
-- copy came first, its hash decides.
seen_hits AS (
    SELECT event_id, arg_min(payload_hash, src) AS payload_hash FROM (
        SELECT event_id, payload_hash, 0 AS src FROM lake_hits
        UNION ALL
        SELECT event_id, payload_hash, 1 AS src FROM seen_candidates SEMI JOIN valid USING (event_id)
    ) GROUP BY event_id
),
repeated_hashes AS (
    SELECT id_hash FROM valid GROUP BY id_hash HAVING count(*) > 1
),
dup_ids AS (
    SELECT event_id FROM valid SEMI JOIN repeated_hashes USING (id_hash) GROUP BY event_id HAVING count(*) > 1
    UNION SELECT event_id FROM seen_hits
),
ranked AS (
    SELECT valid.*,
           row_number() OVER w AS rn,
           first_value(payload_hash) OVER w AS first_hash
    FROM valid SEMI JOIN dup_ids USING (event_id)
    WINDOW w AS (PARTITION BY event_id ORDER BY src_file_idx, src_line)
)
SELECT r.src_file_idx, r.src_line,
       CASE
         WHEN s.event_id IS NOT NULL THEN
           CASE WHEN r.payload_hash = s.payload_hash THEN 'duplicate' ELSE 'conflict' END
         WHEN r.rn = 1 THEN 'lake'
         WHEN r.payload_hash = r.first_hash THEN 'duplicate'
         ELSE 'conflict'
       END AS outcome
FROM ranked r LEFT JOIN seen_hits s USING (event_id)
