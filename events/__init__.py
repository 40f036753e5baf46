"""Shared by every stage: the event contract, settings, Kafka clients and SQL models."""
