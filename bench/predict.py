"""Forecast inference latency for one batch of 1, 100 and 1,000 symbols, and serving through Kafka.

Three figures per batch size, same model, same run:
- ``model_call``: the traced ``model(x, training=False)`` call the serving path uses;
- ``stage``: what serving does per poll batch: append the bar to each symbol's
  history, compute features, scale, call the model, build the Prediction events;
- ``keras_predict``: ``model.predict`` on the same input, the usual call, as the baseline.

The model has the production architecture (default :class:`ModelConfig`); latency
does not depend on its weights, so it is built fresh rather than trained.
Then ``serve_e2e``: 1,000 symbols' bars through the real broker, the serving
runner and back out as predictions.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from bench.common import bench_topics, percentiles, write_result
from predict.model import configure_tensorflow

configure_tensorflow(threads=2)

from events.contract import Bar, bar_id  # noqa: E402
from events.kafka import EventProducer, ShutdownFlag  # noqa: E402
from predict.dataset import build_samples  # noqa: E402
from predict.data import load_offline  # noqa: E402
from predict.features import Scaler, min_history  # noqa: E402
from predict.model import Forecaster, ModelConfig, build_model  # noqa: E402
from predict.serve import PredictionStage  # noqa: E402

SIZES = (1, 100, 1000)
REPS = {1: 300, 100: 200, 1000: 100}
E2E_SYMBOLS = 1000
E2E_BARS = 50
BAR_S = 60
T0_MS = 1_767_225_600_000  # 2026-01-01


def synthetic_bars(n_symbols: int, n_bars: int, seed: int = 0) -> list[list[Bar]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_symbols):
        sym = f"S{k:04d}"
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n_bars)))
        prev = np.concatenate([[100.0], close[:-1]])
        bars = []
        for i in range(n_bars):
            start = T0_MS + i * BAR_S * 1000
            hi, lo = max(prev[i], close[i]) * 1.001, min(prev[i], close[i]) * 0.999
            bars.append(Bar(id=bar_id(sym, BAR_S, start), ts=start + BAR_S * 1000, symbol=sym, start_ms=start,
                            bar_seconds=BAR_S, open=float(prev[i]), high=float(hi), low=float(lo),
                            close=float(close[i]), volume=float(rng.integers(100, 10_000)), count=5,
                            vwap=float(close[i])))
        out.append(bars)
    return out


def make_forecaster(config: ModelConfig) -> Forecaster:
    samples = build_samples(load_offline(), config.window)
    return Forecaster(build_model(config), Scaler.fit(samples.x[:, -1, :]), config)


def timed_ms(fn: Any, reps: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    xs = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t) * 1000)
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in percentiles(xs).items()}


def latency(forecaster: Forecaster, config: ModelConfig) -> dict[str, Any]:
    need = min_history(config.window)
    universe = synthetic_bars(max(SIZES), need + 400)
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {}
    for n in SIZES:
        x = rng.normal(0, 1, (n, config.window, len(config.features))).astype(np.float32)
        sigma = np.full(n, 0.002)
        stage = PredictionStage(forecaster, {"version": "bench", "skill": 0.0, "interval_level": 0.8})
        for bars in universe[:n]:
            stage.predict_bars(bars[:need])  # histories full: every new bar gets a prediction
        step = iter(range(need, need + 400))

        def one_stage_batch() -> None:
            i = next(step)
            preds = stage.predict_bars([bars[i] for bars in universe[:n]])
            assert len(preds) == n

        out[str(n)] = {
            "model_call_ms": timed_ms(lambda: forecaster.predict_returns(x, sigma), REPS[n]),
            "stage_ms": timed_ms(one_stage_batch, min(REPS[n], 300), warmup=5),
            "keras_predict_ms": timed_ms(lambda: forecaster.model.predict(x, verbose=0), min(REPS[n], 50), warmup=3),
        }
    return out


def serve_e2e(forecaster: Forecaster, config: ModelConfig) -> dict[str, Any]:
    """Bars for E2E_SYMBOLS symbols through Kafka -> serving runner -> predictions topic."""
    from confluent_kafka import Consumer, TopicPartition

    from predict.serve import serve

    universe = synthetic_bars(E2E_SYMBOLS, E2E_BARS, seed=2)
    expected = E2E_SYMBOLS * (E2E_BARS - min_history(config.window) + 1)
    with bench_topics() as settings:
        producer = EventProducer(settings)
        for i in range(E2E_BARS):
            for bars in universe:
                producer.produce(bars[i])
        producer.flush()
        flag = ShutdownFlag()

        class _Fixed:  # a registry stand-in with one "promoted" model
            root = "bench"

            def promoted_version(self) -> str:
                return "bench"

        loader = lambda _r, _v: (forecaster, {"version": "bench", "skill": 0.0, "interval_level": 0.8})  # noqa: E731
        started = time.perf_counter()
        thread = threading.Thread(target=serve, args=(settings, _Fixed()),
                                  kwargs={"shutdown": flag, "loader": loader, "group_id": "bench-predict"})
        thread.start()
        topic = settings.topic("predictions")
        sizer = Consumer({**settings.kafka_common(), "group.id": "bench-predict-sizer"})
        parts = [TopicPartition(topic, p) for p in range(settings.kafka_partitions)]
        deadline = time.monotonic() + 120
        produced = 0
        try:
            while time.monotonic() < deadline:
                produced = sum(h - lo for lo, h in (sizer.get_watermark_offsets(p, timeout=10) for p in parts))
                if produced >= expected:
                    break
                flag.wait(0.1)
            elapsed = time.perf_counter() - started
        finally:
            sizer.close()
            flag.set()
            thread.join(30)
    n_bars = E2E_SYMBOLS * E2E_BARS
    return {"symbols": E2E_SYMBOLS, "bars": n_bars, "predictions": produced, "expected_predictions": expected,
            "seconds_from_start_incl_group_join": round(elapsed, 2), "bars_per_s": round(n_bars / elapsed),
            "predictions_per_s": round(produced / elapsed)}


def main() -> dict[str, Any]:
    load_before = round(os.getloadavg()[0], 2)  # the machine is shared: say how busy it was
    config = ModelConfig()
    forecaster = make_forecaster(config)
    lat = latency(forecaster, config)
    figures = {
        "model": f"LSTM({config.units}), window {config.window} x {len(config.features)} features, 3 quantiles",
        "threads": "TensorFlow intra-op 2, inter-op 1",
        "latency": lat,
        "aim_1000_symbols_under_ms": 50,
        "stage_1000_p50_ms": lat["1000"]["stage_ms"]["p50"],
        "stage_1000_p99_ms": lat["1000"]["stage_ms"]["p99"],
        "model_call_1000_p99_ms": lat["1000"]["model_call_ms"]["p99"],
        "meets_aim_p50": lat["1000"]["stage_ms"]["p50"] < 50,
        "meets_aim_p99": lat["1000"]["stage_ms"]["p99"] < 50,
        "load_avg_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "speedup_model_call_vs_keras_predict_1000_p50": round(
            lat["1000"]["keras_predict_ms"]["p50"] / lat["1000"]["model_call_ms"]["p50"], 1),
        "serve_e2e": serve_e2e(forecaster, config),
    }
    return write_result("predict", figures)


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2))
