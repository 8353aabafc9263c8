-- Each line's JSON judged on its own: is it JSON, is it an object (ingest/validate.py).
checked AS (
    SELECT src_file_idx, src_line, line,
           -- json_valid first: guarding with try() instead would fall back to row-at-a-time for
           -- every vector holding one malformed line, and with dirty data that is most vectors.
           json_valid(line) AS is_json,
           -- json_transform also "parses" arrays and scalars, into an all-NULL struct. Nearly every
           -- line starts with its brace: only the others pay for ltrim's copy of the line.
           -- ltrim decodes characters, so it sees only lines the parser took: those alone are
           -- sure to be UTF-8 (the engine checks the others after the parse).
           CASE WHEN starts_with(line, '{') THEN true
                WHEN json_valid(line) THEN starts_with(ltrim(line, E' \t\r'), '{')
                ELSE false END AS is_object
    FROM lines
)
