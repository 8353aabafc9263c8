-- One date's events of the chunk into one staged Parquet file of the events table, with the
-- lineage columns (source file and line, batch, payload hash). The source path per row comes
-- from a constant list rather than a join: same result, less work.
COPY (
    SELECT ${columns},
           ${src_paths}[c.src_file_idx + 1] AS _src_file, c.src_line AS _src_line,
           '${batch_id}' AS _batch_id, c.payload_hash AS _payload_hash
    FROM c
    WHERE c.outcome = 'lake' AND c.event_date = DATE '${day}'
) TO ${path} (
    FORMAT parquet, COMPRESSION ${compression}, ROW_GROUP_SIZE ${row_group_rows}
)
