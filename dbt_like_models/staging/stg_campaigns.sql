/* ---
materialized: view
description: >-
  One row per ad campaign: in-feed ads priced per thousand impressions (cpm_micros), splash ads at a
  flat fee (flat_fee_cents) and DOU+ promotions of one video (promoted_video_id). From the catalog
  export (dims.campaigns).
columns:
  campaign_id:
    description: The campaign.
    tests: [not_null, unique]
  advertiser_id:
    description: The advertiser who runs it.
    tests: [not_null]
  ad_format:
    description: "feed (CPM), splash (flat fee) or dou_plus (a paid promotion of a creator's video)."
    tests: [not_null, {accepted_values: {values: [feed, splash, dou_plus]}}]
  objective:
    description: What the advertiser optimises for; it decides which conversion type counts.
    tests: [{accepted_values: {values: [conversions, app_installs, lead_generation, followers], severity: warn}}]
  cpm_micros:
    description: Price per thousand impressions, micro-dollars (feed ads; NULL otherwise).
  flat_fee_cents:
    description: Flat fee, US cents (splash ads and DOU+ orders; NULL otherwise).
  budget_cents:
    description: The campaign's budget, US cents.
  target_age_band:
    description: The age band the campaign targets (NULL when it targets everyone).
  target_category:
    description: The content category the campaign targets.
  promoted_video_id:
    description: The video a DOU+ campaign promotes (NULL for other formats).
    tests: [{relationships: {to: "ref('stg_videos')", field: video_id}}]
  start_ms:
    description: Campaign start, epoch ms UTC.
  end_ms:
    description: Campaign end, epoch ms UTC.
  start_at:
    description: start_ms as a TIMESTAMP (UTC).
  end_at:
    description: end_ms as a TIMESTAMP (UTC).
--- */
WITH dims_campaigns AS NOT MATERIALIZED (
    SELECT * FROM {{ source('dims', 'campaigns') }}
),

final AS (
    SELECT
        campaign_id,
        advertiser_id,
        ad_format,
        objective,
        cpm_micros,
        flat_fee_cents,
        budget_cents,
        target_age_band,
        target_category,
        promoted_video_id,
        start_ms,
        end_ms,
        epoch_ms(start_ms) AS start_at,
        epoch_ms(end_ms) AS end_at
    FROM dims_campaigns
)

SELECT * FROM final
