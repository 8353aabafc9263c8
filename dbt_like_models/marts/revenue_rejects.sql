/* ---
materialized: table
description: >
  Money records left out of marts.creator_revenue_daily, each with its reason: live gifts whose
  streamer is unknown or whose guild contract share is missing or outside the configured range,
  orders with an unknown creator or an unsupported currency, DOU+ orders outside $10-$7,000, without
  an amount or promoting an unknown video. Nothing is dropped silently: gross revenue = accepted
  gross (creator_revenue_daily) + the amounts here.
unique_key: [source, record_id]
columns:
  source:
    description: live_gifts, orders or dou_plus.
    tests: [not_null, {accepted_values: {values: [live_gifts, orders, dou_plus]}}]
  record_id:
    description: The rejected record (the gift's or order's event_id; the DOU+ order's campaign_id).
    tests: [not_null]
  creator_id:
    description: The creator the money was for (NULL when it could not be determined).
  day:
    description: UTC date of the record.
    tests: [not_null]
  amount_cents:
    description: Gross amount of the record in cents (NULL when it had none).
  reason:
    description: Why it was rejected (see the source's intermediate model).
    tests: [not_null]
  detail:
    description: The numbers behind the reason.
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

final AS (
    SELECT
        'live_gifts' AS source,
        event_id AS record_id,
        creator_id,
        day,
        value_cents AS amount_cents,
        reject_reason AS reason,
        CASE reject_reason
            WHEN 'guild_share_out_of_range' THEN printf('guild_share %s outside the configured range', CAST(contract_share AS VARCHAR))
            WHEN 'guild_share_missing' THEN printf('guild %s has no contract share', coalesce(CAST(guild_id AS VARCHAR), 'NULL'))
            WHEN 'unknown_creator' THEN printf('creator %s not in stg_creators', CAST(creator_id AS VARCHAR))
            ELSE printf('creator_type %s', coalesce(creator_type, 'NULL'))
        END AS detail
    FROM int_live_gift_shares
    WHERE reject_reason IS NOT NULL
    UNION ALL
    SELECT
        'orders',
        event_id,
        creator_id,
        day,
        amount_cents,
        reject_reason,
        printf('order %s', order_id)
    FROM int_order_commissions
    WHERE reject_reason IS NOT NULL
    UNION ALL
    SELECT
        'dou_plus',
        CAST(campaign_id AS VARCHAR),
        creator_id,
        day,
        amount_cents,
        reject_reason,
        reject_detail
    FROM int_dou_plus_orders
    WHERE reject_reason IS NOT NULL
)

SELECT * FROM final
