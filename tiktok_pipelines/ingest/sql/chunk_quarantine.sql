-- The chunk's quarantined lines (the lines not UTF-8 are added in Python), each with its reason;
-- their raw text as it arrived is added in Python too, by position (engine._with_raw_lines).
SELECT '${stream}' AS stream, fl.rel_path AS src_file, c.src_line::BIGINT AS src_line,
       c.final_reason AS reason, c.event_id, '${batch_id}' AS batch_id, ${now_ms}::BIGINT AS ingested_at_ms,
       c.src_file_idx
FROM c JOIN files fl USING (src_file_idx)
WHERE c.outcome = 'quarantine'
