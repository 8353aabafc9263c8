-- Outcome per line (lake, duplicate or quarantine) and the quarantine reason, without copying
-- the wide table again: judged holds only the rare duplicate candidates, everything else valid
-- goes to the lake.
CREATE OR REPLACE TEMP VIEW c AS
SELECT v.*,
       CASE WHEN v.reason IS NOT NULL OR j.outcome = 'conflict' THEN 'quarantine'
            ELSE coalesce(j.outcome, 'lake') END AS outcome,
       coalesce(v.reason, CASE WHEN j.outcome = 'conflict' THEN 'conflicting_duplicate' END) AS final_reason
FROM v LEFT JOIN judged j USING (src_file_idx, src_line)
