/* ---
materialized: view
description: >-
  One row per e-commerce order placed through a creator's video, live stream, showcase or an ad.
  Every contract column of raw.orders (validated and deduplicated by event_id at ingestion) plus day
  and ts, both UTC; the lake's bookkeeping columns (_src_file, _batch_id, ...) are left out.
columns:
  event_id:
    description: Globally unique id; the dedupe key.
    tests: [not_null, unique]
  ts_ms:
    description: "When the action happened, epoch ms UTC."
    tests: [not_null]
  user_id:
    description: The buyer.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  order_id:
    description: The order.
    tests: [not_null]
  creator_id:
    description: "The video's or stream's creator."
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  video_id:
    description: "The video the order came through, for source = video. Optional (NULL when absent)."
    tests: [{relationships: {to: "ref('stg_videos')", field: video_id}}]
  stream_id:
    description: "The live stream the order came through, for source = live. Optional (NULL when absent)."
  campaign_id:
    description: "The ad campaign the order came through, for source = ad. Optional (NULL when absent)."
    tests: [{relationships: {to: "ref('stg_campaigns')", field: campaign_id}}]
  product_id:
    description: The product.
  quantity:
    description: Units ordered.
  amount_cents:
    description: "What the buyer paid, US cents."
    tests: [not_null]
  currency:
    description: "The order's currency."
    tests: [{accepted_values: {values: [USD]}}]
  source:
    description: "Where the order was placed: a video, a live stream, the creator's showcase or an ad."
    tests: [{accepted_values: {values: [video, live, showcase, ad]}}]
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_orders AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'orders') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        order_id,
        creator_id,
        video_id,
        stream_id,
        campaign_id,
        product_id,
        quantity,
        amount_cents,
        currency,
        source,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_orders
)

SELECT * FROM final
