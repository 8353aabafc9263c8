/* ---
materialized: table
description: >
  Ad delivery per campaign, ad group and UTC day (from stg_ad_events impressions and clicks):
  impressions, distinct users reached, clicks, CPM-priced cost (cost_micros of feed and search
  impressions), 2-second and 6-second views (impressions whose watch_time_ms reached 2,000 / 6,000)
  and ad watch time. Flat fees (splash, DOU+) are added in marts.ad_performance_daily.
unique_key: [campaign_id, ad_group_id, day]
columns:
  campaign_id:
    description: The campaign.
    tests: [not_null]
  ad_group_id:
    description: The ad group (NULL only if an impression or click carried none).
  day:
    description: UTC date of the impression or click.
    tests: [not_null]
  impressions:
    description: Ad impressions.
    tests: [not_null]
  reach:
    description: Distinct users with an impression of the ad group that day.
    tests: [not_null]
  clicks:
    description: Ad clicks.
    tests: [not_null]
  cpm_spend_micros:
    description: Sum of cost_micros over the impressions (micros of a dollar; 0 for flat-fee formats).
    tests: [not_null]
  views_2s:
    description: Impressions watched for at least 2 seconds.
    tests: [not_null]
  views_6s:
    description: Impressions watched for at least 6 seconds.
    tests: [not_null]
  watch_time_ms:
    description: Sum of watch_time_ms over the impressions.
    tests: [not_null]
--- */
WITH stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),

final AS (
    SELECT
        campaign_id,
        ad_group_id,
        day,
        count(*) FILTER (WHERE event_type = 'impression')                              AS impressions,
        count(DISTINCT user_id) FILTER (WHERE event_type = 'impression')               AS reach,
        count(*) FILTER (WHERE event_type = 'click')                                   AS clicks,
        CAST(coalesce(sum(cost_micros) FILTER (WHERE event_type = 'impression'), 0) AS BIGINT) AS cpm_spend_micros,
        count(*) FILTER (WHERE event_type = 'impression' AND watch_time_ms >= 2000)    AS views_2s,
        count(*) FILTER (WHERE event_type = 'impression' AND watch_time_ms >= 6000)    AS views_6s,
        CAST(coalesce(sum(watch_time_ms) FILTER (WHERE event_type = 'impression'), 0) AS BIGINT) AS watch_time_ms
    FROM stg_ad_events
    WHERE event_type IN ('impression', 'click')
    GROUP BY campaign_id, ad_group_id, day
)

SELECT * FROM final
