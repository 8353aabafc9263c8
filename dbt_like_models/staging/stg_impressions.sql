/* ---
materialized: view
description: >-
  One row per item the recommender served into a feed (the serve-time feature log), with the
  features it used. Every contract column of raw.impressions (validated and deduplicated by event_id
  at ingestion) plus day and ts, both UTC; the lake's bookkeeping columns (_src_file, _batch_id,
  ...) are left out.
columns:
  event_id:
    description: Globally unique id; the dedupe key.
    tests: [not_null, unique]
  ts_ms:
    description: "When the action happened, epoch ms UTC."
    tests: [not_null]
  user_id:
    description: The user the feed was served to.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  request_id:
    description: The feed request that served the item.
    tests: [not_null]
  session_id:
    description: The app session.
  video_id:
    description: The video.
    tests: [not_null, {relationships: {to: "ref('stg_videos')", field: video_id}}]
  creator_id:
    description: "The video's or stream's creator."
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  position:
    description: 0-based slot in the served page.
  surface:
    description: Where the feed was shown.
    tests: [{accepted_values: {values: [foryou, following, search, profile, live]}}]
  candidate_source:
    description: Which candidate generator proposed the item.
    tests: [{accepted_values: {values: [trending, following, personal, explore, promoted]}}]
  model_version:
    description: The ranker version that scored the item.
  score:
    description: "The ranker's score when served."
  served_features:
    description: "Feature values the recommender saw, as served (point-in-time by construction)."
  day:
    description: UTC date of ts_ms (the lake's event_date partition).
    tests: [not_null]
  ts:
    description: ts_ms as a TIMESTAMP (UTC).
--- */
WITH raw_impressions AS NOT MATERIALIZED (
    SELECT * FROM {{ source('raw', 'impressions') }}
),

final AS (
    SELECT
        event_id,
        ts_ms,
        user_id,
        request_id,
        session_id,
        video_id,
        creator_id,
        position,
        surface,
        candidate_source,
        model_version,
        score,
        served_features,
        CAST(event_date AS DATE) AS day,
        epoch_ms(ts_ms) AS ts
    FROM raw_impressions
)

SELECT * FROM final
