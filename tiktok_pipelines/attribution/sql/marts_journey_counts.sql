-- every_conversion_has_one_row: the raw conversions against the journeys' rows and distinct ids;
-- and how many were earned by a click or a view.
SELECT (SELECT count(*) FROM raw.ad_events WHERE event_type = 'conversion') AS raw_conversions,
       count(*) AS journey_rows,
       count(DISTINCT conversion_id) AS distinct_conversions,
       count(*) FILTER (WHERE touch_type = 'click') AS by_click,
       count(*) FILTER (WHERE touch_type = 'view') AS by_view
FROM marts.attribution_journeys
