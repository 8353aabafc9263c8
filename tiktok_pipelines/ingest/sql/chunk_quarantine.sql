-- The chunk's quarantined lines (the lines not UTF-8 are added in Python), each with its reason
-- and its raw text as it arrived.
SELECT '${stream}' AS stream, fl.rel_path AS src_file, c.src_line::BIGINT AS src_line,
       c.final_reason AS reason, c.event_id, rtrim(l.line::VARCHAR, E'\n') AS raw_line,
       '${batch_id}' AS batch_id, ${now_ms}::BIGINT AS ingested_at_ms
FROM c JOIN files fl USING (src_file_idx) JOIN lines l USING (src_file_idx, src_line)
WHERE c.outcome = 'quarantine'
