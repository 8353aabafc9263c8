/* ---
materialized: table
description: >
  One row per user (stg_users) with their audience segment and activity over all the data:
  demographics (age band, gender, country; 'unknown' when missing) and interest category = the
  category whose videos the user watched longest (ties: more plays, then the name). A video's
  category is its catalog label (stg_videos.category) where the catalog has one and the tagger's
  prediction (video_tags.category) only where it has none: the catalog is the OLTP side's ground
  truth, and KuaiRec-based catalogs leave some videos unlabelled. A user with no categorised play is
  in interest category 'none'. Activity: plays, watch time, likes/comments/shares, ad impressions,
  clicks and conversions by the user.
unique_key: [user_id]
columns:
  user_id:
    description: The user.
    tests: [unique, not_null]
  age_band:
    description: Age band (stg_users), 'unknown' when missing.
    tests: [not_null]
  gender:
    description: Gender (stg_users), 'unknown' when missing.
    tests: [not_null]
  country:
    description: Country code (stg_users), 'unknown' when missing.
    tests: [not_null]
  interest_category:
    description: The category the user watched longest; 'none' without a categorised play.
    tests: [not_null]
  views:
    description: Plays by the user.
    tests: [not_null]
  watch_time_ms:
    description: The user's total watch time.
    tests: [not_null]
  likes:
    description: Likes by the user.
    tests: [not_null]
  comments:
    description: Comments by the user.
    tests: [not_null]
  shares:
    description: Shares by the user.
    tests: [not_null]
  ad_impressions:
    description: Ad impressions shown to the user.
    tests: [not_null]
  ad_clicks:
    description: Ad clicks by the user.
    tests: [not_null]
  conversions:
    description: Ad conversions by the user (any type).
    tests: [not_null]
  purchase_value_cents:
    description: Value of the user's ad purchase conversions, in cents.
    tests: [not_null]
--- */
WITH stg_videos AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_videos') }}
),
video_tags AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('video_tags') }}
),
stg_views AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_views') }}
),
stg_interactions AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_interactions') }}
),
stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),
stg_users AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_users') }}
),

video_category AS (
    SELECT v.video_id, coalesce(v.category, t.category) AS category
    FROM stg_videos AS v
    LEFT JOIN video_tags AS t ON t.video_id = v.video_id
),
plays AS (
    SELECT user_id, count(*) AS views, coalesce(sum(watch_time_ms), 0) AS watch_time_ms
    FROM stg_views
    GROUP BY user_id
),
by_category AS (
    SELECT s.user_id, vc.category, sum(s.watch_time_ms) AS watch_time_ms, count(*) AS views
    FROM stg_views AS s
    JOIN video_category AS vc ON vc.video_id = s.video_id
    WHERE vc.category IS NOT NULL
    GROUP BY s.user_id, vc.category
),
favourite AS (
    SELECT user_id, category
    FROM by_category
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY watch_time_ms DESC, views DESC, category) = 1
),
engagement AS (
    SELECT
        user_id,
        count(*) FILTER (WHERE event_type = 'like')    AS likes,
        count(*) FILTER (WHERE event_type = 'comment') AS comments,
        count(*) FILTER (WHERE event_type = 'share')   AS shares
    FROM stg_interactions
    GROUP BY user_id
),
ads AS (
    SELECT
        user_id,
        count(*) FILTER (WHERE event_type = 'impression') AS ad_impressions,
        count(*) FILTER (WHERE event_type = 'click')      AS ad_clicks,
        count(*) FILTER (WHERE event_type = 'conversion') AS conversions,
        coalesce(sum(value_cents) FILTER (WHERE event_type = 'conversion' AND conversion_type = 'purchase'), 0)
            AS purchase_value_cents
    FROM stg_ad_events
    GROUP BY user_id
),

final AS (
    SELECT
        u.user_id,
        coalesce(u.age_band, 'unknown') AS age_band,
        coalesce(u.gender, 'unknown') AS gender,
        coalesce(u.country, 'unknown') AS country,
        coalesce(f.category, 'none') AS interest_category,
        coalesce(p.views, 0) AS views,
        CAST(coalesce(p.watch_time_ms, 0) AS BIGINT) AS watch_time_ms,
        coalesce(e.likes, 0) AS likes,
        coalesce(e.comments, 0) AS comments,
        coalesce(e.shares, 0) AS shares,
        coalesce(a.ad_impressions, 0) AS ad_impressions,
        coalesce(a.ad_clicks, 0) AS ad_clicks,
        coalesce(a.conversions, 0) AS conversions,
        CAST(coalesce(a.purchase_value_cents, 0) AS BIGINT) AS purchase_value_cents
    FROM stg_users AS u
    LEFT JOIN plays AS p ON p.user_id = u.user_id
    LEFT JOIN favourite AS f ON f.user_id = u.user_id
    LEFT JOIN engagement AS e ON e.user_id = u.user_id
    LEFT JOIN ads AS a ON a.user_id = u.user_id
)

SELECT * FROM final
