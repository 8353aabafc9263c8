-- The touches of the null (non-converting) journeys: per key (key_list), the touches after its
-- last conversion, within the click window of the last of them if a click is in it, else the
-- view window. Rendered by tiktok_pipelines.attribution.journeys.build_journeys.
CREATE OR REPLACE TEMP TABLE ${null_journey_touches} AS
WITH last_conv AS (
    SELECT ${key_list}, max(ts_ms) AS last_conversion_ms FROM ${in_conversions} GROUP BY ALL
), tail AS (
    SELECT t.* FROM ${in_touches} t LEFT JOIN last_conv c ON ${on}
    WHERE c.last_conversion_ms IS NULL OR t.ts_ms > c.last_conversion_ms
), anchor AS (
    SELECT ${key_list}, max(ts_ms) AS anchor_ms, max(ts_ms) FILTER (WHERE is_click) AS last_click_ms
    FROM tail GROUP BY ALL
)
SELECT ${touch_keys}, t.touch_id, t.ts_ms, t.channel, t.campaign_id
FROM tail t JOIN anchor c ON ${on}
WHERE CASE WHEN c.last_click_ms >= c.anchor_ms - ${click_ms}
           THEN t.is_click AND t.ts_ms >= c.anchor_ms - ${click_ms}
           ELSE NOT t.is_click AND t.ts_ms >= c.anchor_ms - ${view_ms} END
