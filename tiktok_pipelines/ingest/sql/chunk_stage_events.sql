-- One date's events of the chunk into one staged Parquet file of the events table, with the
-- lineage columns (source file and line, batch, payload hash). The source path per row comes
-- from a constant list rather than a join: same result, less work.
--
-- Two sources: the valid lines the compiled path typed are read from its Arrow columns
-- (`typed_lines`: no wide copy of them was made), all but the rare duplicates; the lines the
-- SQL parsed are in `v_rows`.
COPY (
    SELECT ${typed_columns},
           ${src_paths}[t.src_file_idx + 1] AS _src_file, t.src_line AS _src_line,
           '${batch_id}' AS _batch_id, t.payload_hash AS _payload_hash
    FROM typed_lines t ANTI JOIN (SELECT src_file_idx, src_line FROM judged WHERE outcome <> 'lake') USING (src_file_idx, src_line)
    WHERE t.event_date = DATE '${day}'
    UNION ALL
    SELECT ${columns},
           ${src_paths}[r.src_file_idx + 1] AS _src_file, r.src_line AS _src_line,
           '${batch_id}' AS _batch_id, r.payload_hash AS _payload_hash
    FROM v_rows r SEMI JOIN (SELECT src_file_idx, src_line FROM c WHERE outcome = 'lake') USING (src_file_idx, src_line)
    WHERE r.event_date = DATE '${day}'
) TO ${path} (
    FORMAT parquet, COMPRESSION ${compression}, ROW_GROUP_SIZE ${row_group_rows}
)
