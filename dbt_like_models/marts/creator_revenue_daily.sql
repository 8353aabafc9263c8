/* ---
materialized: table
description: >
  Revenue per creator, UTC day and revenue stream, split between creator and platform in integer
  cents. live_gifts: the streamer keeps their share (individual 30%, guild 40-55% by contract:
  int_live_gift_shares); ecommerce: the platform takes its commission (10%) of sales; dou_plus:
  promotion bought for the creator's videos, all of it platform revenue (creator share 0), booked
  on the order's start day once that day is inside the data (latest play or ad event).
  Rounding rule: the split is made once per creator, day and stream on the summed gross;
  creator_share_cents = floor(gross_cents x creator rate) and the platform gets the remainder, so
  creator_share_cents + platform_share_cents = gross_cents exactly (split_check = ok). Rates come
  from seeds.revenue_shares and dims.creators, never from this SQL. Rejected gifts, orders and DOU+
  orders are in marts.revenue_rejects instead.
unique_key: [creator_id, day, revenue_stream]
columns:
  creator_id:
    description: The creator.
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  day:
    description: UTC date (gift time, order time, or the DOU+ order's start day).
    tests: [not_null]
  revenue_stream:
    description: live_gifts, ecommerce or dou_plus.
    tests: [not_null, {accepted_values: {values: [live_gifts, ecommerce, dou_plus]}}]
  events:
    description: Gifts, orders or DOU+ orders summed into the row.
    tests: [not_null]
  gross_cents:
    description: Gross value in cents (gift value, order amount, DOU+ amount).
    tests: [not_null]
  creator_share_rate:
    description: Creator's share of gross as a decimal fraction (0.300000 for an individual streamer, 0.900000 for e-commerce, 0 for DOU+).
    tests: [not_null]
  creator_share_cents:
    description: floor(gross_cents x creator_share_rate), in cents.
    tests: [not_null]
  platform_share_cents:
    description: gross_cents - creator_share_cents (the platform gets the rounding remainder).
    tests: [not_null]
  gross_usd:
    description: gross_cents in dollars, DECIMAL(18,2).
    tests: [not_null]
  creator_share_usd:
    description: creator_share_cents in dollars, DECIMAL(18,2).
    tests: [not_null]
  platform_share_usd:
    description: platform_share_cents in dollars, DECIMAL(18,2).
    tests: [not_null]
  split_check:
    description: ok when creator_share_cents + platform_share_cents = gross_cents and neither is negative; mismatch otherwise (must never happen).
    tests: [not_null, {accepted_values: {values: [ok]}}]
--- */
WITH int_live_gift_shares AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_live_gift_shares') }}
),
int_order_commissions AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_order_commissions') }}
),
int_dou_plus_orders AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_dou_plus_orders') }}
),
stg_views AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_views') }}
),
stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),

gross AS (
    SELECT creator_id, day, 'live_gifts' AS revenue_stream, creator_share_ppm,
           count(*) AS events, sum(value_cents) AS gross_cents
    FROM int_live_gift_shares
    WHERE reject_reason IS NULL
    GROUP BY creator_id, day, creator_share_ppm
    UNION ALL
    SELECT creator_id, day, 'ecommerce', 1000000 - commission_ppm,
           count(*), sum(amount_cents)
    FROM int_order_commissions
    WHERE reject_reason IS NULL
    GROUP BY creator_id, day, commission_ppm
    UNION ALL
    SELECT creator_id, day, 'dou_plus', 0,
           count(*), sum(amount_cents)
    FROM int_dou_plus_orders
    WHERE reject_reason IS NULL
      -- the catalog lists promotions that start after the data ends: not paid yet, not booked
      AND day <= (SELECT greatest(max(day), (SELECT max(day) FROM stg_views))
                  FROM stg_ad_events)
    GROUP BY creator_id, day
),
split AS (
    SELECT
        creator_id,
        day,
        revenue_stream,
        CAST(events AS BIGINT) AS events,
        CAST(gross_cents AS BIGINT) AS gross_cents,
        creator_share_ppm,
        -- integer floor division: exact for any amount, no float in the money path
        CAST((CAST(gross_cents AS HUGEINT) * creator_share_ppm) // 1000000 AS BIGINT) AS creator_share_cents
    FROM gross
),

final AS (
    SELECT
        creator_id,
        day,
        revenue_stream,
        events,
        gross_cents,
        CAST(creator_share_ppm AS DECIMAL(18,0)) * 0.000001 AS creator_share_rate,
        creator_share_cents,
        gross_cents - creator_share_cents AS platform_share_cents,
        CAST(gross_cents AS DECIMAL(18,0)) * 0.01 AS gross_usd,
        CAST(creator_share_cents AS DECIMAL(18,0)) * 0.01 AS creator_share_usd,
        CAST(gross_cents - creator_share_cents AS DECIMAL(18,0)) * 0.01 AS platform_share_usd,
        CASE
            WHEN creator_share_cents + (gross_cents - creator_share_cents) = gross_cents
             AND creator_share_cents >= 0 AND creator_share_cents <= gross_cents THEN 'ok'
            ELSE 'mismatch'
        END AS split_check
    FROM split
)

SELECT * FROM final
