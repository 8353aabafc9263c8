/* ---
materialized: view
description: >-
  One row per video: caption, hashtags, the catalog's category (NULL when unknown: the content tagger
  fills the gap in content.video_tags), duration and language. From the catalog export (dims.videos).
columns:
  video_id:
    description: The video.
    tests: [not_null, unique]
  creator_id:
    description: Who published it.
    tests: [not_null, {relationships: {to: "ref('stg_creators')", field: creator_id}}]
  caption:
    description: The caption as published (any language; Chinese for KuaiRec videos).
  hashtags:
    description: Hashtags as published (VARCHAR[]; not normalised, see content.video_tags).
  category:
    description: The catalog's first-level category, NULL when the catalog does not know it.
  duration_ms:
    description: Length of the video, ms.
  language:
    description: Caption language (ISO 639-1).
  published_at_ms:
    description: When the video was published, epoch ms UTC.
  published_at:
    description: published_at_ms as a TIMESTAMP (UTC).
  source:
    description: "Where the catalog row came from: kuairec (a real KuaiRec video) or generated."
    tests: [{accepted_values: {values: [kuairec, generated], severity: warn}}]
  source_video_id:
    description: The video's id in its source dataset (NULL for generated videos).
--- */
WITH dims_videos AS NOT MATERIALIZED (
    SELECT * FROM {{ source('dims', 'videos') }}
),

final AS (
    SELECT
        video_id,
        creator_id,
        caption,
        hashtags,
        category,
        duration_ms,
        language,
        published_at_ms,
        epoch_ms(published_at_ms) AS published_at,
        source,
        source_video_id
    FROM dims_videos
)

SELECT * FROM final
