/* ---
materialized: table
description: >
  Suggestions for advertisers, one row per campaign, suggestion type and subject, with the numbers
  behind them, over all the data. Thresholds are configuration (seeds.ad_settings; per-campaign
  targets in seeds.ad_targets). Types: cpa_above_target (campaign CPA above its target CPA, or
  spend above the target with no conversion); roas_below_target (ROAS under ad_targets.target_roas);
  ctr_below_placement_median (the campaign's CTR on a placement under ctr_low_ratio x the median CTR
  of campaigns on that placement); budget_overpacing / budget_underpacing (CPM campaigns whose spend
  over the flight days seen so far is far from the budget's straight-line share);
  segment_outperforms (an age band x gender segment whose CTR on the campaign is at least
  segment_outperform_ratio x the campaign's CTR).
unique_key: [campaign_id, suggestion_type, subject]
columns:
  campaign_id:
    description: The campaign.
    tests: [not_null, {relationships: {to: "ref('stg_campaigns')", field: campaign_id}}]
  suggestion_type:
    description: What is suggested.
    tests: [not_null, {accepted_values: {values: [cpa_above_target, roas_below_target, ctr_below_placement_median, budget_overpacing, budget_underpacing, segment_outperforms]}}]
  subject:
    description: What the evidence is about, e.g. campaign, placement=feed, segment=18-24/female.
    tests: [not_null]
  metric:
    description: The metric compared (cpa_usd, roas, ctr, pace).
    tests: [not_null]
  metric_value:
    description: The campaign's value of the metric (NULL for a CPA with no conversion).
  benchmark_value:
    description: What it is compared with (target, median, expected pace 1.0, the campaign's CTR).
  impressions:
    description: Impressions behind the evidence.
  clicks:
    description: Clicks behind the evidence.
  conversions:
    description: Conversions behind the evidence.
  spend_usd:
    description: Spend behind the evidence, in dollars.
  suggestion:
    description: The suggestion in words, with the numbers.
    tests: [not_null]
--- */
WITH ad_settings AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('ad_settings') }}
),
ad_targets AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('ad_targets') }}
),
ad_performance_daily AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('ad_performance_daily') }}
),
stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),
stg_campaigns AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_campaigns') }}
),
stg_users AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_users') }}
),

cfg AS (
    SELECT
        max(value) FILTER (WHERE key = 'default_target_cpa_usd')   AS default_target_cpa,
        max(value) FILTER (WHERE key = 'min_impressions')          AS min_impressions,
        max(value) FILTER (WHERE key = 'min_conversions_for_cpa')  AS min_conversions,
        max(value) FILTER (WHERE key = 'ctr_low_ratio')            AS ctr_low_ratio,
        max(value) FILTER (WHERE key = 'pacing_over_ratio')        AS pacing_over,
        max(value) FILTER (WHERE key = 'pacing_under_ratio')       AS pacing_under,
        max(value) FILTER (WHERE key = 'segment_outperform_ratio') AS segment_ratio,
        max(value) FILTER (WHERE key = 'segment_min_impressions')  AS segment_min_impressions
    FROM ad_settings
),
targets AS (
    SELECT
        CAST(campaign_id AS BIGINT) AS campaign_id,
        CAST(target_cpa_usd AS DOUBLE) AS target_cpa_usd,
        CAST(target_roas AS DOUBLE) AS target_roas
    FROM ad_targets
),
campaign AS (
    SELECT
        p.campaign_id,
        sum(p.impressions) AS impressions,
        sum(p.clicks) AS clicks,
        sum(p.conversions) AS conversions,
        sum(p.spend_micros) / 1e6 AS spend_usd,
        sum(p.purchase_value_cents) / 100 AS purchase_value_usd,
        min(p.day) AS first_day,
        max(p.day) AS last_day
    FROM ad_performance_daily AS p
    GROUP BY p.campaign_id
),
data_window AS (
    SELECT min(day) AS first_day, max(day) AS last_day FROM stg_ad_events
),
cpa AS (
    SELECT
        c.campaign_id,
        'cpa_above_target' AS suggestion_type,
        'campaign' AS subject,
        'cpa_usd' AS metric,
        c.spend_usd / nullif(c.conversions, 0) AS metric_value,
        coalesce(t.target_cpa_usd, cfg.default_target_cpa) AS benchmark_value,
        c.impressions, c.clicks, c.conversions, c.spend_usd
    FROM campaign AS c
    CROSS JOIN cfg
    LEFT JOIN targets AS t ON t.campaign_id = c.campaign_id
    WHERE c.impressions >= cfg.min_impressions
      AND (
          (c.conversions >= greatest(cfg.min_conversions, 1)
           AND c.spend_usd / c.conversions > coalesce(t.target_cpa_usd, cfg.default_target_cpa))
          OR (c.conversions = 0 AND c.spend_usd > coalesce(t.target_cpa_usd, cfg.default_target_cpa))
      )
),
roas AS (
    SELECT
        c.campaign_id,
        'roas_below_target', 'campaign', 'roas',
        c.purchase_value_usd / nullif(c.spend_usd, 0),
        t.target_roas,
        c.impressions, c.clicks, c.conversions, c.spend_usd
    FROM campaign AS c
    JOIN targets AS t ON t.campaign_id = c.campaign_id
    WHERE t.target_roas IS NOT NULL AND c.spend_usd > 0
      AND c.purchase_value_usd / c.spend_usd < t.target_roas
),
placement AS (
    SELECT
        campaign_id,
        placement,
        count(*) FILTER (WHERE event_type = 'impression') AS impressions,
        count(*) FILTER (WHERE event_type = 'click') AS clicks
    FROM stg_ad_events
    WHERE event_type IN ('impression', 'click') AND placement IS NOT NULL
    GROUP BY campaign_id, placement
),
placement_ctr AS (
    SELECT p.*, p.clicks / p.impressions AS ctr
    FROM placement AS p CROSS JOIN cfg
    WHERE p.impressions >= cfg.min_impressions
),
placement_median AS (
    SELECT placement, median(ctr) AS median_ctr, count(*) AS campaigns
    FROM placement_ctr
    GROUP BY placement
),
low_ctr AS (
    SELECT
        p.campaign_id,
        'ctr_below_placement_median', 'placement=' || p.placement, 'ctr',
        p.ctr, m.median_ctr,
        p.impressions, p.clicks, CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE)
    FROM placement_ctr AS p
    JOIN placement_median AS m USING (placement)
    CROSS JOIN cfg
    WHERE m.campaigns >= 2 AND p.ctr < cfg.ctr_low_ratio * m.median_ctr
),
pacing_base AS (
    SELECT
        c.campaign_id,
        c.budget_cents / 100 AS budget_usd,
        CAST(epoch_ms(c.start_ms) AS DATE) AS flight_start,
        CAST(epoch_ms(greatest(c.end_ms - 1, c.start_ms)) AS DATE) AS flight_end
    FROM stg_campaigns AS c
    WHERE c.ad_format = 'feed' AND c.budget_cents > 0
),
pacing AS (
    SELECT
        b.campaign_id,
        b.budget_usd,
        CAST(b.flight_end - b.flight_start + 1 AS DOUBLE) AS flight_days,
        CAST(least(b.flight_end, w.last_day) - greatest(b.flight_start, w.first_day) + 1 AS DOUBLE) AS seen_days,
        coalesce(c.spend_usd, 0) AS spend_usd,
        coalesce(c.impressions, 0) AS impressions,
        coalesce(c.clicks, 0) AS clicks,
        coalesce(c.conversions, 0) AS conversions
    FROM pacing_base AS b
    CROSS JOIN data_window AS w
    LEFT JOIN campaign AS c ON c.campaign_id = b.campaign_id
),
pace AS (
    SELECT *, spend_usd / (budget_usd * seen_days / flight_days) AS pace
    FROM pacing
    WHERE seen_days > 0 AND budget_usd > 0
),
paced AS (
    SELECT
        p.campaign_id,
        CASE WHEN p.pace > cfg.pacing_over THEN 'budget_overpacing' ELSE 'budget_underpacing' END,
        'campaign', 'pace',
        p.pace, 1.0,
        p.impressions, p.clicks, p.conversions, p.spend_usd
    FROM pace AS p CROSS JOIN cfg
    WHERE p.pace > cfg.pacing_over OR p.pace < cfg.pacing_under
),
segment AS (
    SELECT
        e.campaign_id,
        coalesce(u.age_band, 'unknown') || '/' || coalesce(u.gender, 'unknown') AS segment,
        count(*) FILTER (WHERE e.event_type = 'impression') AS impressions,
        count(*) FILTER (WHERE e.event_type = 'click') AS clicks
    FROM stg_ad_events AS e
    LEFT JOIN stg_users AS u ON u.user_id = e.user_id
    WHERE e.event_type IN ('impression', 'click')
    GROUP BY ALL
),
segment_vs_campaign AS (
    SELECT
        s.campaign_id,
        s.segment,
        s.impressions,
        s.clicks,
        s.clicks / s.impressions AS segment_ctr,
        c.clicks / nullif(c.impressions, 0) AS campaign_ctr
    FROM segment AS s
    JOIN campaign AS c USING (campaign_id)
    CROSS JOIN cfg
    WHERE s.impressions >= cfg.segment_min_impressions
),
segments AS (
    SELECT
        s.campaign_id,
        'segment_outperforms', 'segment=' || s.segment, 'ctr',
        s.segment_ctr, s.campaign_ctr,
        s.impressions, s.clicks, CAST(NULL AS BIGINT), CAST(NULL AS DOUBLE)
    FROM segment_vs_campaign AS s CROSS JOIN cfg
    WHERE s.campaign_ctr > 0 AND s.segment_ctr >= cfg.segment_ratio * s.campaign_ctr
),
all_suggestions AS (
    SELECT * FROM cpa
    UNION ALL SELECT * FROM roas
    UNION ALL SELECT * FROM low_ctr
    UNION ALL SELECT * FROM paced
    UNION ALL SELECT * FROM segments
),

final AS (
    SELECT
        campaign_id,
        suggestion_type,
        subject,
        metric,
        metric_value,
        benchmark_value,
        CAST(impressions AS BIGINT) AS impressions,
        CAST(clicks AS BIGINT) AS clicks,
        CAST(conversions AS BIGINT) AS conversions,
        CAST(spend_usd AS DOUBLE) AS spend_usd,
        CASE suggestion_type
            WHEN 'cpa_above_target' THEN
                CASE WHEN conversions = 0
                     THEN printf('Spent $%.2f with no conversion (target CPA $%.2f): review targeting and creatives or pause.',
                                 spend_usd, benchmark_value)
                     ELSE printf('CPA $%.2f is above the $%.2f target (%d conversions for $%.2f): tighten targeting or lower bids.',
                                 metric_value, benchmark_value, conversions, spend_usd)
                END
            WHEN 'roas_below_target' THEN
                printf('ROAS %.2f is below the %.2f target on $%.2f spend: shift budget to better ad groups or segments.',
                       metric_value, benchmark_value, spend_usd)
            WHEN 'ctr_below_placement_median' THEN
                printf('CTR on %s is %.2f%% against a %.2f%% median for the placement (%d impressions): refresh the creative or move budget.',
                       replace(subject, 'placement=', ''), 100 * metric_value, 100 * benchmark_value, impressions)
            WHEN 'budget_overpacing' THEN
                printf('Spending %.1f%% of the straight-line budget pace ($%.2f so far): the budget will run out before the flight ends; cap daily spend.',
                       100 * metric_value, spend_usd)
            WHEN 'budget_underpacing' THEN
                printf('Spending only %.1f%% of the straight-line budget pace ($%.2f so far): raise bids or widen targeting to deliver the budget.',
                       100 * metric_value, spend_usd)
            WHEN 'segment_outperforms' THEN
                printf('Segment %s clicks at %.2f%% against %.2f%% for the whole campaign (%d impressions): raise bids or budget for it.',
                       replace(subject, 'segment=', ''), 100 * metric_value, 100 * benchmark_value, impressions)
        END AS suggestion
    FROM all_suggestions
)

SELECT * FROM final
