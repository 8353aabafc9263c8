/* ---
materialized: view
description: >-
  One row per play of a video, with watch time and how the viewer got there; a quick swipe away is a
  view with small watch time. Every contract column of raw.views (validated and deduplicated by
  event_id at ingestion) plus day and ts, both UTC; the lake's bookkeeping columns (_src_file,
  _batch_id, ...) are left out.
columns:
  event_id:
    description: Globally unique id; the dedupe key.
    tests: [not_null, unique]
  ts_ms:
    description: "When the action happened, epoch ms UTC."
    tests: [not_null]
  user_id:
    description: The viewer.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  session_id:
    description: The app session.
  request_id:
    description: "The impression's request when the play came from a served feed. Optional (NULL when absent)."
  video_id:
    description: The video.
    tests: [not_null, {relationships: {to: "ref('stg_videos')", field: video_id}}]
  creator_id:
    description: "The video's or stream's creator."
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  watch_time_ms:
    description: "How long the video played, ms."
    tests: [not_null]
  video_duration_ms:
    description: "The video's length, ms."
  traffic_source:
    description: How the viewer reached the video.
    tests: [{accepted_values: {values: [foryou, following, search, profile, share_link, ad, live]}}]
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_views AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'views') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        session_id,
        request_id,
        video_id,
        creator_id,
        watch_time_ms,
        video_duration_ms,
        traffic_source,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_views
)

SELECT * FROM final
