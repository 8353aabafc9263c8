-- Touches from the ad_events stream (relation): impressions (views) and clicks; channel = placement.
SELECT event_id AS touch_id, user_id, advertiser_id, ts_ms,
       coalesce(placement, 'unknown') AS channel, campaign_id,
       event_type = 'click' AS is_click
FROM ${relation} WHERE event_type IN ('impression', 'click')
