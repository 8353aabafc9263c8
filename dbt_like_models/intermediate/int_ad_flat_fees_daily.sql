/* ---
materialized: table
description: >
  Flat-fee campaigns (splash, and DOU+ orders accepted by int_dou_plus_orders) spread straight-line
  over the UTC days of their flight, in integer cents: each day gets floor(fee / flight days) and
  the first (fee mod flight days) days one cent more, so a whole flight sums to the fee exactly.
  Only the days inside the data (first to last day of stg_ad_events) are kept: spend outside the
  data window happened before it, or has not happened yet.
unique_key: [campaign_id, day]
columns:
  campaign_id:
    description: The flat-fee campaign.
    tests: [not_null]
  day:
    description: UTC flight day.
    tests: [not_null]
  flight_days:
    description: Days in the whole flight (start_ms to end_ms).
    tests: [not_null]
  fee_cents:
    description: The campaign's whole flat fee in cents.
    tests: [not_null]
  fee_day_cents:
    description: The part of the fee booked on this day, in cents.
    tests: [not_null]
--- */
WITH stg_ad_events AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_ad_events') }}
),
stg_campaigns AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('stg_campaigns') }}
),
int_dou_plus_orders AS NOT MATERIALIZED (
    SELECT * FROM {{ ref('int_dou_plus_orders') }}
),

data_window AS (
    SELECT min(day) AS first_day, max(day) AS last_day FROM stg_ad_events
),
fees AS (
    SELECT
        c.campaign_id,
        c.flat_fee_cents AS fee_cents,
        CAST(epoch_ms(c.start_ms) AS DATE) AS flight_start,
        CAST(epoch_ms(greatest(c.end_ms - 1, c.start_ms)) AS DATE) AS flight_end
    FROM stg_campaigns AS c
    LEFT JOIN int_dou_plus_orders AS d ON d.campaign_id = c.campaign_id
    WHERE c.flat_fee_cents > 0
      AND d.reject_reason IS NULL  -- a rejected DOU+ order was never charged
),
flight AS (
    SELECT
        campaign_id,
        fee_cents,
        flight_start,
        CAST(flight_end - flight_start + 1 AS BIGINT) AS flight_days,
        CAST(unnest(generate_series(flight_start, flight_end, INTERVAL 1 DAY)) AS DATE) AS day
    FROM fees
),

final AS (
    SELECT
        f.campaign_id,
        f.day,
        f.flight_days,
        f.fee_cents,
        f.fee_cents // f.flight_days
            + CASE WHEN (f.day - f.flight_start) < f.fee_cents % f.flight_days THEN 1 ELSE 0 END AS fee_day_cents
    FROM flight AS f
    CROSS JOIN data_window AS w
    WHERE f.day BETWEEN w.first_day AND w.last_day
)

SELECT * FROM final
