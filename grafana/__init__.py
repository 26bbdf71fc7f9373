"""The Grafana dashboards as code (``python -m grafana.build``) and the vocabulary they share with the alert rules."""
