"""The forecaster: a small Keras LSTM with quantile outputs (pinball loss).

Input: a window of scaled features. Output: the 0.1, 0.5 and 0.9 quantiles
of the next bar's volatility-normalised log return; the median is the point
forecast and the outer pair the 80 % prediction interval. The outer
quantiles are the median minus/plus a softplus, so they never cross.

Importing this module configures TensorFlow once (quiet logs, few threads):
call :func:`configure_tensorflow` before anything else imports TensorFlow
to choose the thread count.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from predict.dataset import Samples
from predict.features import FEATURES, Scaler

_configured = False


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Drop what native code writes to fd 2 meanwhile: TensorFlow's import banner (oneDNN,
    "log messages before absl::InitializeLog") ignores TF_CPP_MIN_LOG_LEVEL. Python
    exceptions still propagate and are printed after fd 2 is restored."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def configure_tensorflow(threads: int = 2) -> None:
    """Quiet TensorFlow's C++ logs and cap its thread pools (2 cores here). Idempotent."""
    global _configured
    if _configured:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import absl.logging

    with _quiet_native_stderr():
        import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by someone else: keep its pools
    _configured = True


configure_tensorflow()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@dataclass(frozen=True)
class ModelConfig:
    window: int = 20
    units: int = 16
    quantiles: tuple[float, float, float] = (0.1, 0.5, 0.9)
    epochs: int = 40
    batch_size: int = 256
    patience: int = 5
    learning_rate: float = 3e-3
    seed: int = 42
    features: tuple[str, ...] = field(default=FEATURES)

    @property
    def interval_level(self) -> float:
        return round(self.quantiles[2] - self.quantiles[0], 6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        d = dict(d)
        d["quantiles"] = tuple(d["quantiles"])
        d["features"] = tuple(d["features"])
        return cls(**d)


@keras.saving.register_keras_serializable(package="tickerbell")
# keras ships no type information: its classes are Any to mypy, so subclassing one needs the ignore
class MonotoneQuantiles(keras.layers.Layer):  # type: ignore[misc]
    """(median, a, b) -> (median - softplus(a), median, median + softplus(b))."""

    def call(self, x: Any) -> Any:
        mid = x[:, 1:2]
        return keras.ops.concatenate(
            [mid - keras.ops.softplus(x[:, 0:1]), mid, mid + keras.ops.softplus(x[:, 2:3])], axis=1)


@keras.saving.register_keras_serializable(package="tickerbell")
class PinballLoss(keras.losses.Loss):  # type: ignore[misc]  # keras: no type information
    """Mean quantile (pinball) loss over the quantile outputs."""

    def __init__(self, quantiles: tuple[float, ...] = (0.1, 0.5, 0.9), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quantiles = tuple(float(q) for q in quantiles)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        q = keras.ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        err = keras.ops.reshape(y_true, (-1, 1)) - y_pred
        return keras.ops.mean(keras.ops.maximum(q * err, (q - 1.0) * err), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "quantiles": list(self.quantiles)}


def build_model(config: ModelConfig) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((config.window, len(config.features)), name="window")
    h = keras.layers.LSTM(config.units, name="lstm")(inputs)
    raw = keras.layers.Dense(3, name="raw_quantiles")(h)
    outputs = MonotoneQuantiles(name="quantiles")(raw)
    model = keras.Model(inputs, outputs, name="tickerbell_lstm")
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=PinballLoss(config.quantiles))
    return model


class EpochLog(keras.callbacks.Callback):  # type: ignore[misc]  # keras: no type information
    """Prints one line per epoch: epoch, loss, val_loss, seconds."""

    def __init__(self, epochs: int, log: Callable[[str], None]) -> None:
        super().__init__()
        self.epochs, self.log, self._t = epochs, log, 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = logs or {}
        self.log(f"epoch {epoch + 1:>3}/{self.epochs}  loss {logs.get('loss', float('nan')):.5f}  "
                 f"val_loss {logs.get('val_loss', float('nan')):.5f}  ({time.perf_counter() - self._t:.1f}s)")


@dataclass
class Forecaster:
    """A trained model with its scaler: raw feature windows in, log-return quantiles out."""

    model: keras.Model
    scaler: Scaler
    config: ModelConfig
    _fn: Any = None

    def __post_init__(self) -> None:
        model = self.model
        spec = tf.TensorSpec((None, self.config.window, len(self.config.features)), tf.float32)
        # a traced graph call: model.predict costs milliseconds of set-up per call
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def quantiles_z(self, x_raw: np.ndarray) -> np.ndarray:
        """Normalised-return quantiles ``(N, 3)`` for raw windows ``(N, W, F)``."""
        if len(x_raw) == 0:
            return np.empty((0, 3))
        x = self.scaler.transform(x_raw).astype(np.float32)
        z: np.ndarray = self._fn(tf.constant(x)).numpy().astype(np.float64)
        return z

    def predict_returns(self, x_raw: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Log-return quantiles ``(N, 3)`` (low, median, high) of the next bar."""
        returns: np.ndarray = self.quantiles_z(x_raw) * np.asarray(sigma)[:, None]
        return returns


def fit(train: Samples, val: Samples, config: ModelConfig = ModelConfig(),
        log: Callable[[str], None] = print) -> tuple[Forecaster, dict[str, list[float]]]:
    """Fit the scaler on ``train`` only, then the LSTM with early stopping on ``val``."""
    if len(train) < config.batch_size // 4 or len(val) < 10:
        raise ValueError(f"too little data to train: {len(train)} training, {len(val)} validation windows")
    scaler = Scaler.fit(train.x[:, -1, :])
    model = build_model(config)
    xt = scaler.transform(train.x).astype(np.float32)
    xv = scaler.transform(val.x).astype(np.float32)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(xt, train.y.astype(np.float32), validation_data=(xv, val.y.astype(np.float32)),
                     epochs=config.epochs, batch_size=config.batch_size, shuffle=True, verbose=0,
                     callbacks=[stop, EpochLog(config.epochs, log)])
    best = int(np.argmin(hist.history["val_loss"])) + 1
    log(f"trained on {len(train)} windows in {time.perf_counter() - t0:.1f}s; best epoch {best} "
        f"(val_loss {min(hist.history['val_loss']):.5f})")
    return Forecaster(model, scaler, config), {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def load_keras_model(path: str) -> keras.Model:
    return keras.models.load_model(path, compile=False)
