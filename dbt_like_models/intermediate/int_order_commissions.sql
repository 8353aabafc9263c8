/* ---
materialized: table
description: >
  One row per e-commerce order with the platform commission that applies
  (revenue_shares.ecommerce_platform_commission, 10%) as integer parts per million. An order that
  cannot be split (unknown creator, a currency other than USD) has a reject_reason; it is listed in
  marts.revenue_rejects and left out of marts.creator_revenue_daily.
unique_key: [event_id]
columns:
  event_id:
    description: The order event (stg_orders.event_id).
    tests: [unique, not_null]
  order_id:
    description: The shop's order id.
    tests: [not_null]
  creator_id:
    description: The creator who sold through a video, live stream, showcase or ad.
    tests: [not_null]
  day:
    description: UTC date of the order.
    tests: [not_null]
  source:
    description: Where the order was placed.
    tests: [{accepted_values: {values: [video, live, showcase, ad]}}]
  amount_cents:
    description: Gross sales amount, in cents.
    tests: [not_null]
  commission_ppm:
    description: Platform commission in parts per million (100000 = 10%); NULL when rejected.
  reject_reason:
    description: NULL when the order can be split; otherwise unknown_creator or unsupported_currency.
    tests: [{accepted_values: {values: [unknown_creator, unsupported_currency]}}]
--- */
WITH revenue_shares AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('revenue_shares') }}
),
stg_orders AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_orders') }}
),
stg_creators AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_creators') }}
),

cfg AS (
    SELECT max(value) FILTER (WHERE key = 'ecommerce_platform_commission') AS commission
    FROM revenue_shares
),
checked AS (
    SELECT
        o.event_id,
        o.order_id,
        o.creator_id,
        o.day,
        o.source,
        o.amount_cents,
        cfg.commission,
        CASE
            WHEN c.creator_id IS NULL THEN 'unknown_creator'
            WHEN o.currency IS DISTINCT FROM 'USD' THEN 'unsupported_currency'
        END AS reject_reason
    FROM stg_orders AS o
    CROSS JOIN cfg
    LEFT JOIN stg_creators AS c ON c.creator_id = o.creator_id
),

final AS (
    SELECT
        event_id,
        order_id,
        creator_id,
        day,
        source,
        amount_cents,
        CASE WHEN reject_reason IS NULL THEN CAST(round(commission * 1e6) AS BIGINT) END AS commission_ppm,
        reject_reason
    FROM checked
)

SELECT * FROM final
