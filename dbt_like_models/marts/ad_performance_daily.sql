/* ---
materialized: table
description: >
  Ads performance per campaign, ad group and UTC day, with DESIGN.md's definitions:
  CPM = spend / impressions x 1000, CPC = spend / clicks, CTR = clicks / impressions,
  CVR = conversions / clicks, CPA = spend / conversions, ROAS = purchase value / spend,
  frequency = impressions / reach. A ratio whose denominator is 0 is NULL (never an error or
  infinity). Spend = cost_micros of CPM-priced impressions + flat fees (splash, accepted DOU+) spread
  over their flight days (int_ad_flat_fees_daily) and split across the day's ad groups by
  impressions (floor, remainder to the ad group with most impressions; exact to the micro).
  Conversions count on their own day, credited to an ad group by int_ad_conversions. ad_group_id is
  NULL on rows that no ad group can hold: a flat fee on a day without delivery, conversions with no
  touch inside the windows. Reach is distinct users of the row; it does not add up across rows.
unique_key: [campaign_id, ad_group_id, day]
columns:
  campaign_id:
    description: The campaign.
    tests: [not_null, {relationships: {to: "ref('stg_campaigns')", field: campaign_id}}]
  ad_group_id:
    description: The ad group; NULL for a fee-only or unattributed-conversion row.
  day:
    description: UTC date.
    tests: [not_null]
  advertiser_id:
    description: The campaign's advertiser (stg_campaigns).
  ad_format:
    description: feed (CPM-priced), splash (flat fee) or dou_plus (flat fee).
    tests: [{accepted_values: {values: [feed, splash, dou_plus]}}]
  objective:
    description: The campaign objective.
  impressions:
    description: Ad impressions.
    tests: [not_null]
  reach:
    description: Distinct users who saw the ad group that day.
    tests: [not_null]
  frequency:
    description: impressions / reach.
  clicks:
    description: Ad clicks.
    tests: [not_null]
  ctr:
    description: clicks / impressions, a fraction (0.015 = 1.5%).
  spend_micros:
    description: Spend in micros of a dollar (exact).
    tests: [not_null]
  spend_usd:
    description: spend_micros in dollars, DECIMAL(18,6) (exact).
    tests: [not_null]
  cpm_usd:
    description: Spend per 1,000 impressions, in dollars.
  cpc_usd:
    description: Spend per click, in dollars.
  conversions:
    description: Conversions credited to the row (any conversion type).
    tests: [not_null]
  cvr:
    description: conversions / clicks, a fraction.
  cpa_usd:
    description: Spend per conversion, in dollars.
  purchases:
    description: Conversions of type purchase.
    tests: [not_null]
  purchase_value_cents:
    description: Value of those purchases, in cents.
    tests: [not_null]
  roas:
    description: Purchase value / spend.
  views_2s:
    description: Impressions watched at least 2 seconds.
    tests: [not_null]
  views_6s:
    description: Impressions watched at least 6 seconds.
    tests: [not_null]
  view_rate_2s:
    description: views_2s / impressions.
  view_rate_6s:
    description: views_6s / impressions.
  avg_watch_time_ms:
    description: Ad play time / impressions, in milliseconds.
--- */
WITH int_ad_delivery_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_ad_delivery_daily') }}
),
int_ad_conversions AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_ad_conversions') }}
),
int_ad_flat_fees_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_ad_flat_fees_daily') }}
),
stg_campaigns AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_campaigns') }}
),

delivery AS (
    SELECT * FROM int_ad_delivery_daily
),
conversions AS (
    SELECT
        campaign_id,
        ad_group_id,
        day,
        count(*) AS conversions,
        count(*) FILTER (WHERE conversion_type = 'purchase') AS purchases,
        coalesce(sum(value_cents) FILTER (WHERE conversion_type = 'purchase'), 0) AS purchase_value_cents
    FROM int_ad_conversions
    GROUP BY campaign_id, ad_group_id, day
),
fee_rows AS (
    -- one row per (campaign, day, ad group with impressions), or one with ad_group_id NULL
    SELECT
        f.campaign_id,
        d.ad_group_id,
        f.day,
        CAST(f.fee_day_cents AS HUGEINT) * 10000 AS fee_micros,
        d.impressions,
        sum(d.impressions) OVER (PARTITION BY f.campaign_id, f.day) AS day_impressions,
        row_number() OVER (PARTITION BY f.campaign_id, f.day
                           ORDER BY d.impressions DESC NULLS LAST, d.ad_group_id NULLS LAST) AS rank_in_day
    FROM int_ad_flat_fees_daily AS f
    LEFT JOIN delivery AS d
        ON d.campaign_id = f.campaign_id AND d.day = f.day AND d.impressions > 0
),
fee_base AS (
    SELECT
        *,
        CASE WHEN coalesce(day_impressions, 0) = 0 THEN fee_micros
             ELSE (fee_micros * impressions) // day_impressions END AS base_micros
    FROM fee_rows
),
fees AS (
    SELECT
        campaign_id,
        ad_group_id,
        day,
        CAST(base_micros
             + CASE WHEN rank_in_day = 1
                    THEN fee_micros - sum(base_micros) OVER (PARTITION BY campaign_id, day)
                    ELSE 0 END AS BIGINT) AS flat_fee_micros
    FROM fee_base
),
keys AS (
    SELECT campaign_id, ad_group_id, day FROM delivery
    UNION
    SELECT campaign_id, ad_group_id, day FROM conversions
    UNION
    SELECT campaign_id, ad_group_id, day FROM fees
),
joined AS (
    SELECT
        k.campaign_id,
        k.ad_group_id,
        k.day,
        c.advertiser_id,
        c.ad_format,
        c.objective,
        coalesce(d.impressions, 0) AS impressions,
        coalesce(d.reach, 0) AS reach,
        coalesce(d.clicks, 0) AS clicks,
        coalesce(d.cpm_spend_micros, 0) + coalesce(f.flat_fee_micros, 0) AS spend_micros,
        coalesce(v.conversions, 0) AS conversions,
        coalesce(v.purchases, 0) AS purchases,
        CAST(coalesce(v.purchase_value_cents, 0) AS BIGINT) AS purchase_value_cents,
        coalesce(d.views_2s, 0) AS views_2s,
        coalesce(d.views_6s, 0) AS views_6s,
        coalesce(d.watch_time_ms, 0) AS watch_time_ms
    FROM keys AS k
    LEFT JOIN delivery AS d
        ON d.campaign_id = k.campaign_id AND d.day = k.day AND d.ad_group_id IS NOT DISTINCT FROM k.ad_group_id
    LEFT JOIN conversions AS v
        ON v.campaign_id = k.campaign_id AND v.day = k.day AND v.ad_group_id IS NOT DISTINCT FROM k.ad_group_id
    LEFT JOIN fees AS f
        ON f.campaign_id = k.campaign_id AND f.day = k.day AND f.ad_group_id IS NOT DISTINCT FROM k.ad_group_id
    LEFT JOIN stg_campaigns AS c ON c.campaign_id = k.campaign_id
),

final AS (
    SELECT
        campaign_id,
        ad_group_id,
        day,
        advertiser_id,
        ad_format,
        objective,
        impressions,
        reach,
        impressions / nullif(reach, 0) AS frequency,
        clicks,
        clicks / nullif(impressions, 0) AS ctr,
        spend_micros,
        CAST(spend_micros AS DECIMAL(18,0)) * 0.000001 AS spend_usd,
        spend_micros / 1e6 / nullif(impressions, 0) * 1000 AS cpm_usd,
        spend_micros / 1e6 / nullif(clicks, 0) AS cpc_usd,
        conversions,
        conversions / nullif(clicks, 0) AS cvr,
        spend_micros / 1e6 / nullif(conversions, 0) AS cpa_usd,
        purchases,
        purchase_value_cents,
        purchase_value_cents / 100 / nullif(spend_micros / 1e6, 0) AS roas,
        views_2s,
        views_6s,
        views_2s / nullif(impressions, 0) AS view_rate_2s,
        views_6s / nullif(impressions, 0) AS view_rate_6s,
        watch_time_ms / nullif(impressions, 0) AS avg_watch_time_ms
    FROM joined
)

SELECT * FROM final
