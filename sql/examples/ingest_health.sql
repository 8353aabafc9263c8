-- Ingest health per stream and day: what arrived, what was kept, what was quarantined or dropped.
-- Every landing line is in exactly one of rows_lake, rows_quarantine, rows_duplicate.
SELECT
    stream,
    CAST(epoch_ms(flushed_at_ms) AS DATE) AS flushed_date,
    count(*)              AS files,
    sum(rows_read)        AS rows_read,
    sum(rows_lake)        AS rows_lake,
    sum(rows_quarantine)  AS rows_quarantine,
    sum(rows_duplicate)   AS rows_duplicate,
    round(100.0 * sum(rows_quarantine) / nullif(sum(rows_read), 0), 3) AS quarantine_pct
FROM raw.ingest_log
GROUP BY ALL
ORDER BY stream, flushed_date;
