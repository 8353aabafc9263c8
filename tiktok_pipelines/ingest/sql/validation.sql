-- The validation query (ingest/validate.py validation_sql): one parse of each line, json_transform
-- to a struct with one member per field (strings read as VARCHAR, everything else as its JSON
-- fragment), then each field's typed value and presence, then the first failed rule.
WITH ${checked_cte}, parsed AS (
    SELECT src_file_idx, src_line, line, is_json, is_object,
           CASE WHEN is_json THEN json_transform(line, ${structure}) END AS j
    FROM checked
), typed AS (
    SELECT src_file_idx, src_line, is_json, is_object, ${presence}, ${values} FROM parsed
)
${final_select}
