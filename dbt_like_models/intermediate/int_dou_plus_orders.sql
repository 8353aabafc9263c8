/* ---
materialized: table
description: >
  One row per DOU+ order (stg_campaigns with ad_format = dou_plus): a one-off payment to promote a
  video, booked to the promoted video's creator on the UTC day the promotion starts. Orders outside
  [revenue_shares.dou_plus_min_cents, dou_plus_max_cents] ($10-$7,000), without an amount or
  without a known promoted video are rejected with a reason (marts.revenue_rejects), never dropped
  silently; accepted orders are platform revenue in marts.creator_revenue_daily and spend in
  marts.ad_performance_daily.
unique_key: [campaign_id]
columns:
  campaign_id:
    description: The DOU+ order (a campaign with ad_format dou_plus).
    tests: [unique, not_null]
  advertiser_id:
    description: Who paid for the promotion.
  video_id:
    description: The promoted video (stg_campaigns.promoted_video_id).
  creator_id:
    description: The promoted video's creator; NULL when the video is unknown.
  day:
    description: UTC date the promotion starts (start_ms), when the order is paid.
    tests: [not_null]
  amount_cents:
    description: The order amount (stg_campaigns.flat_fee_cents), in cents.
  reject_reason:
    description: NULL for an accepted order; otherwise missing_amount, below_minimum, above_maximum or unknown_video.
    tests: [{accepted_values: {values: [missing_amount, below_minimum, above_maximum, unknown_video]}}]
  reject_detail:
    description: The numbers behind the reason, e.g. "$5.00 < $10.00 minimum".
--- */
WITH revenue_shares AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('revenue_shares') }}
),
stg_campaigns AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_campaigns') }}
),
stg_videos AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_videos') }}
),

cfg AS (
    SELECT
        CAST(max(value) FILTER (WHERE key = 'dou_plus_min_cents') AS BIGINT) AS min_cents,
        CAST(max(value) FILTER (WHERE key = 'dou_plus_max_cents') AS BIGINT) AS max_cents
    FROM revenue_shares
),
orders AS (
    SELECT
        c.campaign_id,
        c.advertiser_id,
        c.promoted_video_id AS video_id,
        v.creator_id,
        CAST(epoch_ms(c.start_ms) AS DATE) AS day,
        c.flat_fee_cents AS amount_cents,
        cfg.min_cents,
        cfg.max_cents,
        v.video_id IS NOT NULL AS video_known
    FROM stg_campaigns AS c
    CROSS JOIN cfg
    LEFT JOIN stg_videos AS v ON v.video_id = c.promoted_video_id
    WHERE c.ad_format = 'dou_plus'
),

final AS (
    SELECT
        campaign_id,
        advertiser_id,
        video_id,
        creator_id,
        day,
        amount_cents,
        CASE
            WHEN amount_cents IS NULL THEN 'missing_amount'
            WHEN amount_cents < min_cents THEN 'below_minimum'
            WHEN amount_cents > max_cents THEN 'above_maximum'
            WHEN NOT video_known THEN 'unknown_video'
        END AS reject_reason,
        CASE
            WHEN amount_cents IS NULL THEN 'no flat_fee_cents on the order'
            WHEN amount_cents < min_cents
                THEN printf('$%.2f < $%.2f minimum', amount_cents / 100, min_cents / 100)
            WHEN amount_cents > max_cents
                THEN printf('$%.2f > $%.2f maximum', amount_cents / 100, max_cents / 100)
            WHEN NOT video_known THEN printf('promoted video %s not in stg_videos', coalesce(CAST(video_id AS VARCHAR), 'NULL'))
        END AS reject_detail
    FROM orders
)

SELECT * FROM final
