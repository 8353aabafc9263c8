/* ---
materialized: table
description: >
  Audience segments = demographics (age band x gender x country) x interest category (the
  category each user watched longest, see int_user_segments), over all the data: size, engagement
  and ad conversion. Ratios are fractions and NULL when their denominator is 0.
unique_key: [age_band, gender, country, interest_category]
columns:
  age_band:
    description: Age band.
    tests: [not_null]
  gender:
    description: Gender.
    tests: [not_null]
  country:
    description: Country code.
    tests: [not_null]
  interest_category:
    description: Interest category ('none' for users without a categorised play).
    tests: [not_null]
  users:
    description: Users in the segment (its size).
    tests: [not_null]
  active_users:
    description: Users with at least one play.
    tests: [not_null]
  views:
    description: Plays by the segment.
    tests: [not_null]
  watch_time_ms:
    description: Watch time of the segment.
    tests: [not_null]
  avg_watch_time_ms:
    description: watch_time_ms / views.
  engagement_rate:
    description: (likes + comments + shares) / views.
  ad_impressions:
    description: Ad impressions shown to the segment.
    tests: [not_null]
  ad_reach:
    description: Users of the segment with at least one ad impression.
    tests: [not_null]
  ad_clicks:
    description: Ad clicks by the segment.
    tests: [not_null]
  ctr:
    description: ad_clicks / ad_impressions.
  conversions:
    description: Ad conversions by the segment.
    tests: [not_null]
  converting_users:
    description: Users of the segment with at least one conversion.
    tests: [not_null]
  cvr:
    description: conversions / ad_clicks.
  conversion_rate:
    description: converting_users / ad_reach (share of reached users who converted).
  purchase_value_cents:
    description: Value of the segment's purchase conversions, in cents.
    tests: [not_null]
--- */
WITH int_user_segments AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_user_segments') }}
),

final AS (
    SELECT
        age_band,
        gender,
        country,
        interest_category,
        count(*) AS users,
        count(*) FILTER (WHERE views > 0) AS active_users,
        CAST(sum(views) AS BIGINT) AS views,
        CAST(sum(watch_time_ms) AS BIGINT) AS watch_time_ms,
        sum(watch_time_ms) / nullif(sum(views), 0) AS avg_watch_time_ms,
        sum(likes + comments + shares) / nullif(sum(views), 0) AS engagement_rate,
        CAST(sum(ad_impressions) AS BIGINT) AS ad_impressions,
        count(*) FILTER (WHERE ad_impressions > 0) AS ad_reach,
        CAST(sum(ad_clicks) AS BIGINT) AS ad_clicks,
        sum(ad_clicks) / nullif(sum(ad_impressions), 0) AS ctr,
        CAST(sum(conversions) AS BIGINT) AS conversions,
        count(*) FILTER (WHERE conversions > 0) AS converting_users,
        sum(conversions) / nullif(sum(ad_clicks), 0) AS cvr,
        count(*) FILTER (WHERE conversions > 0) / nullif(count(*) FILTER (WHERE ad_impressions > 0), 0) AS conversion_rate,
        CAST(sum(purchase_value_cents) AS BIGINT) AS purchase_value_cents
    FROM int_user_segments
    GROUP BY age_band, gender, country, interest_category
)

SELECT * FROM final
