/* ---
materialized: view
description: >-
  One row per registered user with their demographics, from the catalog export (dims.users).
  Audience segments are built from age_band, gender, country and language.
columns:
  user_id:
    description: The user.
    tests: [not_null, unique]
  age_band:
    description: Age band, e.g. 18-24.
    tests: [{accepted_values: {values: ["13-17", "18-24", "25-34", "35-44", "45-54", "55+"], severity: warn}}]
  gender:
    description: Self-reported gender.
    tests: [{accepted_values: {values: [female, male, unknown], severity: warn}}]
  country:
    description: ISO 3166-1 alpha-2 country code.
  language:
    description: App language (ISO 639-1).
  registered_at_ms:
    description: When the user registered, epoch ms UTC.
  registered_at:
    description: registered_at_ms as a TIMESTAMP (UTC).
  activity_level:
    description: How active the user is (low, medium, high).
    tests: [{accepted_values: {values: [low, medium, high], severity: warn}}]
--- */
WITH dims_users AS NOT MATERIALIZED (
    SELECT * FROM {{ source('dims', 'users') }}
),

final AS (
    SELECT
        user_id,
        age_band,
        gender,
        country,
        language,
        registered_at_ms,
        epoch_ms(registered_at_ms) AS registered_at,
        activity_level
    FROM dims_users
)

SELECT * FROM final
