-- marts.attribution_journeys: one row per conversion (attributed or not). ${conversions}: the
-- journeys' conversions relation (journey_conversions.sql).
CREATE OR REPLACE TABLE marts.attribution_journeys AS
SELECT conversion_id, user_id, advertiser_id, reported_campaign_id, conversion_type,
       epoch_ms(ts_ms) AS ts, day, value_cents, attributed, touch_type, touches,
       path AS channels, campaigns, array_to_string(path, ' > ') AS path,
       epoch_ms(first_touch_ms) AS first_touch_ts, epoch_ms(last_touch_ms) AS last_touch_ts
FROM ${conversions}
