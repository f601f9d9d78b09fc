"""Temporal workflows (one package each), the worker and the Kafka -> Temporal event bridge."""
