-- The touches of each conversion's journey (rules: attribution/journeys.py's docstring): the
-- touches of the same keys (on) within the click or view window before it, clicks only when
-- there is one. Rendered by tiktok_pipelines.attribution.journeys.build_journeys.
CREATE OR REPLACE TEMP TABLE ${touches} AS
WITH candidates AS (
    SELECT c.conversion_id, t.touch_id, t.ts_ms, c.ts_ms - t.ts_ms AS age_ms,
           t.channel, t.campaign_id, t.is_click
    FROM ${in_conversions} c JOIN ${in_touches} t ON ${on}
    WHERE t.ts_ms <= c.ts_ms AND t.ts_ms >= c.ts_ms - ${widest_ms}
      AND ((t.is_click AND t.ts_ms >= c.ts_ms - ${click_ms})
           OR (NOT t.is_click AND t.ts_ms >= c.ts_ms - ${view_ms}))
), ranked AS (
    SELECT *, bool_or(is_click) OVER (PARTITION BY conversion_id) AS has_click FROM candidates
)
SELECT conversion_id,
       row_number() OVER (PARTITION BY conversion_id ORDER BY ts_ms, touch_id) AS touch_seq,
       touch_id, ts_ms, age_ms, channel, campaign_id, is_click
FROM ranked WHERE is_click = has_click
ORDER BY conversion_id, touch_seq
