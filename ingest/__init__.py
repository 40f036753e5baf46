"""Tick sources (simulated, CSV replay, yfinance) and the process that publishes them to ``ticks``."""
