-- The null journeys aggregated by path (channel sequence). Single-touch journeys, the common
-- case, are counted without an ordered list aggregate (~2x faster at 1M touches).
CREATE OR REPLACE TEMP TABLE ${null_paths} AS
WITH sized AS (
    SELECT *, count(*) OVER (PARTITION BY ${key_list}) AS n FROM ${null_journey_touches}
), journeys AS (
    SELECT [channel] AS path, count(*) AS journeys FROM sized WHERE n = 1 GROUP BY channel
    UNION ALL
    SELECT path, count(*) FROM (
        SELECT list(channel ORDER BY ts_ms, touch_id) AS path FROM sized WHERE n > 1 GROUP BY ${key_list}
    ) GROUP BY path
)
SELECT path, sum(journeys)::BIGINT AS journeys FROM journeys GROUP BY path ORDER BY path
