"""Prometheus configuration and rules; ``python -m deploy.prometheus.generate_rules`` writes alerts.yml."""
