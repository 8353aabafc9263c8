-- Why lines were rejected, with one example line per reason (look it up in src_file at src_line).
SELECT
    stream,
    split_part(reason, ':', 1) AS reason,
    count(*)                    AS rows,
    any_value(src_file || ':' || src_line) AS example_location,
    left(any_value(raw_line), 120)         AS example_line
FROM raw.quarantine
GROUP BY ALL
ORDER BY rows DESC;
