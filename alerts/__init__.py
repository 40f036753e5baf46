"""Alerts: the rule engine and the notifications.

Pure logic: ``conditions`` (operators over series), ``engine_state`` (rule
lifecycle, symbol index, stale feeds), ``templates`` and ``messages``
(rendering), ``retry`` (retry policy), ``netguard`` (SSRF guard).
Runners: ``engine`` (ticks/metrics/predictions/rules -> ``alerts`` in Kafka
transactions), ``dispatch`` (``alerts`` -> delivery rows -> Celery),
``celery_app``/``tasks``/``notify`` (deliveries over SMTP and HTTP),
``preview`` (a rule over stored history), ``smtp_sink`` (dev mail server).
``python -m alerts --help`` lists the commands.
"""
