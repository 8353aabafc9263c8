"""Running it for real: the hourly analytics schedule, the automation sensor, the run-failure alert
sensor, and the retry, freshness and automation policies the domain assets attach
(``policies.py``). What runs when, and why each is on or off by default: ``docs/operations.md``."""
