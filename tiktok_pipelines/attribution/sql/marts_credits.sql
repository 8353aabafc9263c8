-- marts.attribution_credits: credited conversions and value (DOUBLE: credits are fractional) per
-- model, channel, campaign and day, from the credits frame the connection has registered.
CREATE OR REPLACE TABLE marts.attribution_credits AS
SELECT model, channel, campaign_id, day, conversions::DOUBLE AS credited_conversions,
       value_cents::DOUBLE AS credited_value_cents
FROM attr_credits_frame ORDER BY model, channel, campaign_id, day
