/* ---
materialized: table
description: >
  Likes, comments, shares and follows per creator and UTC day (from stg_interactions).
unique_key: [creator_id, day]
columns:
  creator_id:
    description: The creator the interaction was about (the video's creator, or the followed creator).
    tests: [not_null]
  day:
    description: UTC date of the interaction.
    tests: [not_null]
  likes:
    description: Like events.
    tests: [not_null]
  comments:
    description: Comment events.
    tests: [not_null]
  shares:
    description: Share events (any channel).
    tests: [not_null]
  new_followers:
    description: Distinct users who followed the creator that day (follower growth; unfollows are not in the event stream).
    tests: [not_null]
--- */
WITH stg_interactions AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_interactions') }}
),

final AS (
    SELECT
        creator_id,
        day,
        count(*) FILTER (WHERE event_type = 'like')                    AS likes,
        count(*) FILTER (WHERE event_type = 'comment')                 AS comments,
        count(*) FILTER (WHERE event_type = 'share')                   AS shares,
        count(DISTINCT user_id) FILTER (WHERE event_type = 'follow')   AS new_followers
    FROM stg_interactions
    GROUP BY creator_id, day
)

SELECT * FROM final
