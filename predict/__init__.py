"""Forecasts: LSTM training, walk-forward evaluation, model registry, streaming predictions."""
