/* ---
materialized: view
description: >-
  One row per gift event sent to a live streamer, at gross value. Every contract column of
  raw.live_gifts (validated and deduplicated by event_id at ingestion) plus day and ts, both UTC;
  the lake's bookkeeping columns (_src_file, _batch_id, ...) are left out.
columns:
  event_id:
    description: Globally unique id; the dedupe key.
    tests: [not_null, unique]
  ts_ms:
    description: "When the action happened, epoch ms UTC."
    tests: [not_null]
  user_id:
    description: The user who sent the gifts.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  stream_id:
    description: The live stream.
    tests: [not_null]
  creator_id:
    description: The streamer.
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  gift_type:
    description: The virtual gift.
  gift_count:
    description: How many gifts were sent in this event.
  value_cents:
    description: "Gross value of the gifts, US cents, before the creator's and the platform's shares."
    tests: [not_null]
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_live_gifts AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'live_gifts') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        stream_id,
        creator_id,
        gift_type,
        gift_count,
        value_cents,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_live_gifts
)

SELECT * FROM final
