"""Deploy files; the generators of the rule files run as ``python -m deploy.prometheus.generate_rules`` etc."""
