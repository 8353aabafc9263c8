-- The validation's last step (both forms): the typed columns, the event's date, the payload hash
-- and the first failed rule (the checks: one WHEN per rule, in field order).
SELECT t.src_file_idx, t.src_line,
       ${columns},
       -- epoch_ms gives a naive UTC timestamp; the range guard keeps a wild value from aborting the batch
       CASE WHEN t.${ts} BETWEEN 0 AND 253402300799999 THEN CAST(epoch_ms(t.${ts}) AS DATE) END AS event_date,
       ${payload_hash},
       CASE
            WHEN NOT is_json THEN 'malformed_json'
            WHEN NOT is_object THEN 'not_an_object'
            ${checks}
       END AS reason
FROM typed t JOIN files fl USING (src_file_idx)
