-- The speculative form of validation_checked.sql: a line that starts with '{' and ends with '}'
-- (nearly every line; the dirty ones seen in practice, truncated writes, binary junk, HTML error
-- pages, are not) skips json_valid and goes straight to the one parse, json_transform. That parse
-- refuses everything json_valid refuses (bad UTF-8 too), but by raising: one such line fails the
-- whole query, and the engine runs the checked form instead. json_valid was about a quarter of
-- the validation's CPU.
checked AS (
    SELECT src_file_idx, src_line, line, is_json,
           CASE WHEN screened THEN true
                WHEN starts_with(line, '{') THEN is_json
                WHEN is_json THEN starts_with(ltrim(line, E' \t\r'), '{')
                ELSE false END AS is_object
    FROM (
        SELECT src_file_idx, src_line, line, screened,
               CASE WHEN screened THEN true ELSE json_valid(line) END AS is_json
        FROM (
            SELECT src_file_idx, src_line, line,
                   starts_with(line, '{') AND (ends_with(line, E'}\n') OR ends_with(line, '}')) AS screened
            FROM lines
        )
    )
)
