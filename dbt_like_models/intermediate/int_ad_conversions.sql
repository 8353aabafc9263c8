/* ---
materialized: table
description: >
  One row per ad conversion, credited to an ad group of the campaign its pixel reported: the ad
  group of the same user's last click on that campaign within ad_settings.click_window_days (7)
  before the conversion, else of their last impression within view_window_days (1), else none
  (ad_group_id NULL, attributed_by NULL). Clicks take precedence over views, as in DESIGN.md.
  Cross-campaign, multi-touch credit is the attribution marts' job; this only places a
  conversion inside its campaign.
unique_key: [event_id]
columns:
  event_id:
    description: The conversion event.
    tests: [unique, not_null]
  campaign_id:
    description: The campaign the pixel reported (last touch).
    tests: [not_null]
  ad_group_id:
    description: The credited ad group (NULL when no touch of the campaign is inside the windows).
  attributed_by:
    description: click, view, or NULL when unattributed.
    tests: [{accepted_values: {values: [click, view]}}]
  user_id:
    description: The converting user.
    tests: [not_null]
  day:
    description: UTC date of the conversion (metrics count a conversion on the day it happened).
    tests: [not_null]
  conversion_type:
    description: purchase, signup, app_install or follow.
    tests: [{accepted_values: {values: [purchase, signup, app_install, follow]}}]
  value_cents:
    description: Purchase value in cents (NULL for non-purchases).
  touch_lag_ms:
    description: Milliseconds from the credited touch to the conversion.
--- */
WITH ad_settings AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('ad_settings') }}
),
stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),

cfg AS (
    SELECT
        CAST(round(max(value) FILTER (WHERE key = 'click_window_days') * 86400000) AS BIGINT) AS click_window_ms,
        CAST(round(max(value) FILTER (WHERE key = 'view_window_days') * 86400000) AS BIGINT) AS view_window_ms
    FROM ad_settings
),
conversions AS (
    SELECT event_id, ts_ms, user_id, campaign_id, day, conversion_type, value_cents
    FROM stg_ad_events
    WHERE event_type = 'conversion'
),
clicks AS (
    SELECT user_id, campaign_id, ad_group_id, ts_ms
    FROM stg_ad_events
    WHERE event_type = 'click'
),
impressions AS (
    SELECT user_id, campaign_id, ad_group_id, ts_ms
    FROM stg_ad_events
    WHERE event_type = 'impression'
),
last_click AS (
    SELECT c.*, k.ad_group_id AS click_group, k.ts_ms AS click_ts
    FROM conversions AS c
    ASOF LEFT JOIN clicks AS k
        ON c.user_id = k.user_id AND c.campaign_id = k.campaign_id AND c.ts_ms >= k.ts_ms
),
last_view AS (
    SELECT c.*, i.ad_group_id AS view_group, i.ts_ms AS view_ts
    FROM last_click AS c
    ASOF LEFT JOIN impressions AS i
        ON c.user_id = i.user_id AND c.campaign_id = i.campaign_id AND c.ts_ms >= i.ts_ms
),
credited AS (
    SELECT
        l.*,
        CASE
            WHEN l.click_ts IS NOT NULL AND l.ts_ms - l.click_ts <= cfg.click_window_ms THEN 'click'
            WHEN l.view_ts IS NOT NULL AND l.ts_ms - l.view_ts <= cfg.view_window_ms THEN 'view'
        END AS attributed_by
    FROM last_view AS l
    CROSS JOIN cfg
),

final AS (
    SELECT
        event_id,
        campaign_id,
        CASE attributed_by WHEN 'click' THEN click_group WHEN 'view' THEN view_group END AS ad_group_id,
        attributed_by,
        user_id,
        day,
        conversion_type,
        value_cents,
        CASE attributed_by WHEN 'click' THEN ts_ms - click_ts WHEN 'view' THEN ts_ms - view_ts END AS touch_lag_ms
    FROM credited
)

SELECT * FROM final
