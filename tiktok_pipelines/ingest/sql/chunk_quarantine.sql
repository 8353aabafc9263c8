-- The chunk's quarantined lines (the lines not UTF-8 are added in Python), each with its reason:
-- the SQL's lines (`c`) and the typed lines that conflict with an earlier copy (`judged`). Their
-- raw text as it arrived is added in Python, by position (engine._with_raw_lines).
SELECT '${stream}' AS stream, fl.rel_path AS src_file, c.src_line::BIGINT AS src_line,
       c.final_reason AS reason, c.event_id, '${batch_id}' AS batch_id, ${now_ms}::BIGINT AS ingested_at_ms,
       c.src_file_idx
FROM c JOIN files fl USING (src_file_idx)
WHERE c.outcome = 'quarantine'
UNION ALL
SELECT '${stream}', fl.rel_path, j.src_line::BIGINT, 'conflicting_duplicate', j.event_id, '${batch_id}',
       ${now_ms}::BIGINT, j.src_file_idx
FROM judged j JOIN files fl USING (src_file_idx)
WHERE j.typed AND j.outcome = 'conflict'
