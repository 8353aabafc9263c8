-- The outcome of each duplicate candidate of the chunk (`cand`: the valid lines whose id repeats
-- in the chunk, was put in the lake by an earlier chunk of this batch, or is in the lake; found
-- by engine._judge_duplicates): its first copy goes to the lake, a later copy with the same
-- payload hash is a duplicate, one with another hash a conflict. `seen_c` holds the earlier
-- chunks' lake copies of the candidates' ids (id and payload hash).
CREATE TEMP TABLE judged AS
WITH
-- An id both in the lake (outside an earlier chunk's window) and in `seen_c`: the lake's copy
-- came first, its hash decides.
seen_hits AS (
    SELECT event_id, arg_min(payload_hash, src) AS payload_hash FROM (
        SELECT event_id, payload_hash, 0 AS src FROM lake_hits
        UNION ALL
        SELECT event_id, payload_hash, 1 AS src FROM seen_c
    ) GROUP BY event_id
),
-- A candidate found by its hash alone (two ids may share one) is no duplicate.
dup_ids AS (
    SELECT event_id FROM cand GROUP BY event_id HAVING count(*) > 1
    UNION SELECT event_id FROM seen_hits
),
ranked AS (
    SELECT cand.*,
           row_number() OVER w AS rn,
           first_value(payload_hash) OVER w AS first_hash
    FROM cand SEMI JOIN dup_ids USING (event_id)
    WINDOW w AS (PARTITION BY event_id ORDER BY src_file_idx, src_line)
)
SELECT r.pos, r.src_file_idx, r.src_line, r.event_id, r.typed,
       CASE
         WHEN s.event_id IS NOT NULL THEN
           CASE WHEN r.payload_hash = s.payload_hash THEN 'duplicate' ELSE 'conflict' END
         WHEN r.rn = 1 THEN 'lake'
         WHEN r.payload_hash = r.first_hash THEN 'duplicate'
         ELSE 'conflict'
       END AS outcome
FROM ranked r LEFT JOIN seen_hits s USING (event_id)
