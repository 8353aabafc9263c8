-- The first form of the validation query, the reference validation.sql is tested against
-- (ingest/validate.py reference_validation_sql): json_type of every field plus a typed
-- json_transform.
WITH ${checked_cte}, parsed AS (
    SELECT src_file_idx, src_line, is_json, is_object,
           CASE WHEN is_json THEN json_type(line, ${paths}) END AS jt,
           CASE WHEN is_json THEN json_transform(line, ${structure}) END AS v
    FROM checked
), typed AS (
    SELECT src_file_idx, src_line, is_json, is_object, jt, ${values} FROM parsed
)
${final_select}
