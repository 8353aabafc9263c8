-- Conversions from the ad_events stream (relation); value 0 where the conversion carries none.
SELECT event_id AS conversion_id, user_id, advertiser_id, ts_ms,
       campaign_id AS reported_campaign_id, conversion_type,
       coalesce(value_cents, 0) AS value_cents
FROM ${relation} WHERE event_type = 'conversion'
