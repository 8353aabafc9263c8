/* ---
materialized: view
description: >-
  One row per like, share, comment or follow. Every contract column of raw.interactions (validated
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
    description: The acting user.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  event_type:
    description: What the user did.
    tests: [not_null, {accepted_values: {values: [like, share, comment, follow]}}]
  video_id:
    description: The video (NULL for a follow from a profile).
    tests: [{relationships: {to: "ref('stg_videos')", field: video_id}}]
  creator_id:
    description: The creator the interaction is about (the followed creator for follows).
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  comment_text:
    description: "The comment, for event_type = comment. Optional (NULL when absent)."
  share_channel:
    description: "Where it was shared, for event_type = share. Optional (NULL when absent)."
    tests: [{accepted_values: {values: [im, copy_link, external]}}]
  request_id:
    description: "The impression's request when the action was taken on a served feed item. Optional (NULL when absent)."
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_interactions AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'interactions') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        event_type,
        video_id,
        creator_id,
        comment_text,
        share_channel,
        request_id,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_interactions
)

SELECT * FROM final
