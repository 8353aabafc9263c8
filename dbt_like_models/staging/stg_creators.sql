/* ---
materialized: view
description: >-
  One row per creator: individual, or signed to a guild whose contract sets the streamer's share of
  live-gift revenue (guild_share). From the catalog export (dims.creators).
columns:
  creator_id:
    description: The creator.
    tests: [not_null, unique]
  user_id:
    description: The creator's own user account.
    tests: [not_null, {relationships: {to: "ref('stg_users')", field: user_id}}]
  creator_type:
    description: "individual or guild: decides the live-gift revenue split."
    tests: [not_null, {accepted_values: {values: [individual, guild]}}]
  guild_id:
    description: The guild, for guild creators (NULL for individuals).
  guild_share:
    description: "The streamer's share of live-gift revenue under the guild contract, 0-1 (NULL for individuals)."
  is_live_streamer:
    description: Whether the creator streams live.
  country:
    description: ISO 3166-1 alpha-2 country code.
  joined_at_ms:
    description: When the account became a creator account, epoch ms UTC.
  joined_at:
    description: joined_at_ms as a TIMESTAMP (UTC).
--- */
WITH dims_creators AS NOT MATERIALIZED (
    SELECT * FROM {{ source('dims', 'creators') }}
),

final AS (
    SELECT
        creator_id,
        user_id,
        creator_type,
        guild_id,
        guild_share,
        is_live_streamer,
        country,
        joined_at_ms,
        epoch_ms(joined_at_ms) AS joined_at
    FROM dims_creators
)

SELECT * FROM final
