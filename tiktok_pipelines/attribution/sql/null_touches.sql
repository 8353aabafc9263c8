-- The null journeys' touches by channel, campaign and touch day.
CREATE OR REPLACE TEMP TABLE ${null_touches} AS
SELECT channel, campaign_id, CAST(epoch_ms(ts_ms) AS DATE) AS day, count(*) AS touches
FROM ${null_journey_touches} GROUP BY ALL ORDER BY ALL
