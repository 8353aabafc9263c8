/* ---
materialized: view
description: >-
  One row per ad impression (with its cost), click or conversion; conversions carry no placement
  (attribution decides which touches earned them). Every contract column of raw.ad_events (validated
  and deduplicated by event_id at ingestion) plus day and ts, both UTC; the lake's bookkeeping
  columns (_src_file, _batch_id, ...) are left out.
columns:
  event_id:
    description: Globally unique id; the dedupe key.
    tests: [not_null, unique]
  ts_ms:
    description: "When the action happened, epoch ms UTC."
    tests: [not_null]
  user_id:
    description: "The user who saw, clicked or converted."
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  event_type:
    description: "Impression, click or conversion."
    tests: [not_null, {accepted_values: {values: [impression, click, conversion]}}]
  advertiser_id:
    description: The advertiser.
    tests: [not_null]
  campaign_id:
    description: The ad campaign.
    tests: [not_null, {relationships: {to: "ref('stg_campaigns')", field: campaign_id}}]
  ad_group_id:
    description: The ad group within the campaign. Optional (NULL when absent).
  creative_id:
    description: The ad creative. Optional (NULL when absent).
  placement:
    description: Where the ad ran (NULL for conversions).
    tests: [{accepted_values: {values: [feed, splash, dou_plus, search]}}]
  cost_micros:
    description: What the impression cost the advertiser (CPM-priced feed ads). Optional (NULL when absent).
  watch_time_ms:
    description: "Video-ad play time, ms, for 2-second and 6-second views. Optional (NULL when absent)."
  conversion_type:
    description: "What converted, for event_type = conversion. Optional (NULL when absent)."
    tests: [{accepted_values: {values: [purchase, signup, app_install, follow]}}]
  value_cents:
    description: "Conversion value, US cents (purchases). Optional (NULL when absent)."
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'ad_events') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        event_type,
        advertiser_id,
        campaign_id,
        ad_group_id,
        creative_id,
        placement,
        cost_micros,
        watch_time_ms,
        conversion_type,
        value_cents,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_ad_events
)

SELECT * FROM final
