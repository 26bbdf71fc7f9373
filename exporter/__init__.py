"""Prometheus exporter for pulsatrix EV charging controllers."""

__version__ = "0.1.0"
