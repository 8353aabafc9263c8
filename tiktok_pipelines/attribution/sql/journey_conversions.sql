-- Every conversion with its journey (from the touches table): attributed, touch_type, touches,
-- path, campaigns, first/last touch. Rendered by tiktok_pipelines.attribution.journeys.build_journeys.
CREATE OR REPLACE TEMP TABLE ${conversions} AS
WITH j AS (
    SELECT conversion_id, count(*) AS touches, bool_or(is_click) AS clicked,
           list(channel ORDER BY touch_seq) AS path, list(campaign_id ORDER BY touch_seq) AS campaigns,
           min(ts_ms) AS first_touch_ms, max(ts_ms) AS last_touch_ms
    FROM ${touches} GROUP BY conversion_id
)
SELECT c.*, CAST(epoch_ms(c.ts_ms) AS DATE) AS day,
       j.conversion_id IS NOT NULL AS attributed,
       CASE WHEN j.clicked THEN 'click' WHEN j.conversion_id IS NOT NULL THEN 'view' END AS touch_type,
       coalesce(j.touches, 0) AS touches, j.path, j.campaigns, j.first_touch_ms, j.last_touch_ms
FROM ${in_conversions} c LEFT JOIN j USING (conversion_id)
ORDER BY c.ts_ms, c.conversion_id
