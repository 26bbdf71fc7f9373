"""Kubernetes manifests; ``python -m deploy.kubernetes.generate_prometheusrule`` writes prometheusrule.yml."""
