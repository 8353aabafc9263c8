/* ---
materialized: table
description: >
  One row per live gift with the streamer's contract share. Individual streamers keep
  revenue_shares.gift_creator_share_individual (30%); guild streamers keep their guild contract
  share (stg_creators.guild_share), accepted only inside [gift_guild_share_min,
  gift_guild_share_max] (40-55%). Shares are carried as integer parts per million so the money
  split downstream is exact integer arithmetic. A gift that cannot be split has a reject_reason
  and no share; marts.revenue_rejects lists it, marts.creator_revenue_daily leaves it out.
unique_key: [event_id]
columns:
  event_id:
    description: The gift event (stg_live_gifts.event_id).
    tests: [unique, not_null]
  creator_id:
    description: The streamer who received the gift.
    tests: [not_null]
  day:
    description: UTC date of the gift.
    tests: [not_null]
  value_cents:
    description: Gross value of the gift to the sender, in cents.
    tests: [not_null]
  creator_type:
    description: individual or guild (stg_creators); NULL when the creator is unknown.
    tests: [{accepted_values: {values: [individual, guild]}}]
  guild_id:
    description: The streamer's guild (NULL for individuals).
  contract_share:
    description: The streamer's share as configured or contracted (a fraction, e.g. 0.30), before validation.
  creator_share_ppm:
    description: The accepted streamer share in parts per million (300000 = 30%); NULL when rejected.
  reject_reason:
    description: NULL when the gift can be split; otherwise unknown_creator, unknown_creator_type, guild_share_missing or guild_share_out_of_range.
    tests: [{accepted_values: {values: [unknown_creator, unknown_creator_type, guild_share_missing, guild_share_out_of_range]}}]
--- */
WITH revenue_shares AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('revenue_shares') }}
),
stg_live_gifts AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_live_gifts') }}
),
stg_creators AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_creators') }}
),

cfg AS (
    SELECT
        max(value) FILTER (WHERE key = 'gift_creator_share_individual') AS individual_share,
        max(value) FILTER (WHERE key = 'gift_guild_share_min')          AS guild_min,
        max(value) FILTER (WHERE key = 'gift_guild_share_max')          AS guild_max
    FROM revenue_shares
),
priced AS (
    SELECT
        g.event_id,
        g.creator_id,
        g.day,
        g.value_cents,
        c.creator_type,
        c.guild_id,
        CASE c.creator_type
            WHEN 'individual' THEN cfg.individual_share
            WHEN 'guild' THEN c.guild_share
        END AS contract_share,
        CASE
            WHEN c.creator_id IS NULL THEN 'unknown_creator'
            WHEN c.creator_type = 'individual' THEN NULL
            WHEN c.creator_type <> 'guild' OR c.creator_type IS NULL THEN 'unknown_creator_type'
            WHEN c.guild_share IS NULL OR isnan(c.guild_share) THEN 'guild_share_missing'
            -- compared in ppm, so the same share written in the seed and in the contract compares equal
            WHEN round(c.guild_share * 1e6) < round(cfg.guild_min * 1e6)
              OR round(c.guild_share * 1e6) > round(cfg.guild_max * 1e6) THEN 'guild_share_out_of_range'
        END AS reject_reason
    FROM stg_live_gifts AS g
    CROSS JOIN cfg
    LEFT JOIN stg_creators AS c ON c.creator_id = g.creator_id
),

final AS (
    SELECT
        event_id,
        creator_id,
        day,
        value_cents,
        creator_type,
        guild_id,
        contract_share,
        CASE WHEN reject_reason IS NULL THEN CAST(round(contract_share * 1e6) AS BIGINT) END AS creator_share_ppm,
        reject_reason
    FROM priced
)

SELECT * FROM final
