"""Technical indicators for the daily bars of ONE symbol: SMA, Wilder's RSI, rolling VWAP, daily return.

Each indicator is one plain pandas function over one symbol's series, sorted by date, with the
formula, the warm-up (how many rows are NaN) and a reference in its docstring. Read these to
learn what the numbers mean.

The pipeline computes the same indicators for hundreds of symbols at once, and a daily run
continues them from the stored history instead of starting over. That many-symbol engine is
`src/transformation/indicators_vectorised.py`: the same formulas, written so that one pass over
a big frame serves every symbol. tests/unit/test_indicators_vectorised.py checks that it gives
these functions' numbers (within 1e-12) on real prices, and tests/unit/test_indicators.py checks
these functions against TA-Lib and the `ta` library. docs/indicators.md explains the formulas.

Warm-up rows (not enough history yet) are NaN - stored as NULL, never as zero.

Example:
    >>> closes = pd.Series([10.0, 11.0, 10.5, 11.5, 11.0, 12.0])
    >>> sma(closes, 3).round(4).tolist()
    [nan, nan, 10.5, 11.0, 11.0, 11.5]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SMA_WINDOWS = (20, 50, 200)
RSI_PERIOD = 14
VWAP_WINDOW = 20

# The columns of `fact_technical_indicators` the indicator step fills, in order.
INDICATOR_COLUMNS = [
    "symbol",
    "trade_date",
    "sma_20",
    "sma_50",
    "sma_200",
    "rsi_14",
    "vwap_20",
    "daily_return",
    "rsi_avg_gain_14",
    "rsi_avg_loss_14",
]


def sma(close: pd.Series, window: int) -> pd.Series:
    """Simple moving average: the mean close of the last `window` sessions.

    Formula: sma_t = (close_t + close_{t-1} + ... + close_{t-window+1}) / window
    Warm-up: the first `window - 1` rows are NaN.
    Reference: TA-Lib `SMA` (https://ta-lib.org/functions/); equal within 1e-6 on real data.

    Args:
        close: closes of one symbol, sorted by date.
        window: number of sessions, e.g. 20, 50 or 200.

    Returns:
        A float Series aligned with `close`.

    Example:
        >>> sma(pd.Series([1.0, 2.0, 3.0, 4.0, 5.0]), 3).tolist()
        [nan, nan, 2.0, 3.0, 4.0]
    """
    return close.astype("float64").rolling(window, min_periods=window).mean()


def rsi_wilder(close: pd.Series, period: int = RSI_PERIOD) -> pd.DataFrame:
    """Wilder's Relative Strength Index: the strength of recent up-moves against down-moves (0..100).

    Formula, exactly as TA-Lib's `RSI`:
        change_t = close_t - close_{t-1};  gain_t = max(change_t, 0);  loss_t = max(-change_t, 0)
        on row `period`: avg_gain = the simple mean of the first `period` gains (same for losses)
        after it:        avg_gain_t = ((period - 1) * avg_gain_{t-1} + gain_t) / period
        rsi_t = 100 * avg_gain_t / (avg_gain_t + avg_loss_t)    (= 100 - 100 / (1 + RS))
    So RSI is 100 when there were no losses, and 0 when nothing moved at all (TA-Lib's choice).
    Warm-up: the first `period` rows are NaN (row 0 has no change).
    Every value depends on all earlier rows through the two running averages, so they are
    returned too: a daily run continues from the stored ones (see indicators_vectorised).
    Reference: J. Welles Wilder, "New Concepts in Technical Trading Systems" (1978);
    TA-Lib `RSI` (https://ta-lib.org/functions/); equal within 1e-6 on real data.

    Args:
        close: closes of one symbol, sorted by date.
        period: the smoothing period, 14 by default.

    Returns:
        DataFrame aligned with `close`: rsi_<period>, rsi_avg_gain_<period>, rsi_avg_loss_<period>.
    """
    change = close.astype("float64").diff()
    gains = change.clip(lower=0.0)
    losses = (-change).clip(lower=0.0)
    averages = {}
    for name, moves in (("gain", gains), ("loss", losses)):
        # Wilder's seed on row `period`: the simple mean of the moves on rows 1..period. The rows
        # before it are NaN, so ewm starts from the seed and leaves the warm-up NaN.
        seeded = moves.copy()
        seeded.iloc[:period] = np.nan
        if len(moves) > period:
            seeded.iloc[period] = moves.iloc[1 : period + 1].mean()
        # ewm(alpha=1/period, adjust=False): y_t = ((period - 1) * y_{t-1} + x_t) / period.
        averages[name] = seeded.ewm(alpha=1.0 / period, adjust=False).mean()
    total = averages["gain"] + averages["loss"]
    # A flat line (no gains, no losses) gives 0 / 0: TA-Lib returns 0 there. NaN stays NaN.
    rsi = (100.0 * averages["gain"] / total).where(total != 0, 0.0)
    return pd.DataFrame(
        {f"rsi_{period}": rsi, f"rsi_avg_gain_{period}": averages["gain"], f"rsi_avg_loss_{period}": averages["loss"]}
    )


def vwap_rolling(
    high: pd.Series, low: pd.Series, close: pd.Series, volume: pd.Series, window: int = VWAP_WINDOW
) -> pd.Series:
    """Rolling volume-weighted average price over the last `window` sessions (vwap_20).

    The classic VWAP is intraday: it restarts every session and weights every trade's price.
    On daily bars a one-session VWAP is just that day's typical price and says nothing, so a
    daily pipeline uses a rolling N-session VWAP instead.

    Formula: typical_t = (high_t + low_t + close_t) / 3
             vwap_t = sum(typical * volume over the last `window` rows) / sum(volume over them)
    Warm-up: the first `window - 1` rows are NaN. Also NaN when the window's volume is zero.
    Reference: `ta.volume.VolumeWeightedAveragePrice(high, low, close, volume, window)` of the
    `ta` library, same formula and warm-up (equal within 1e-9 on real data);
    https://school.stockcharts.com/doku.php?id=technical_indicators:vwap_intraday

    Args:
        high, low, close, volume: one symbol's bars, sorted by date.
        window: number of sessions, 20 by default.

    Returns:
        A float Series aligned with `close`.
    """
    shares = volume.astype("float64")
    typical_price = (high + low + close) / 3.0
    price_x_volume = (typical_price * shares).rolling(window, min_periods=window).sum()
    total_volume = shares.rolling(window, min_periods=window).sum()
    return (price_x_volume / total_volume).where(total_volume != 0)


def daily_return(close: pd.Series) -> pd.Series:
    """Simple daily return: how much the close moved since the previous session.

    Formula: return_t = close_t / close_{t-1} - 1    (0.01 means +1 %)
    Warm-up: the first row is NaN: there is no previous close.
    Reference: `ta.others.DailyReturnIndicator` (which reports it in percent).

    Example:
        >>> daily_return(pd.Series([100.0, 110.0, 99.0])).round(12).tolist()
        [nan, 0.1, -0.1]
    """
    values = close.astype("float64")
    return values / values.shift(1) - 1.0


def symbol_indicators(prices: pd.DataFrame) -> pd.DataFrame:
    """Every indicator of one symbol's bars, as the rows of `fact_technical_indicators`.

    Args:
        prices: one symbol's validated bars (symbol, trade_date, high, low, close, volume),
            sorted by trade_date.

    Returns:
        The INDICATOR_COLUMNS, row for row like `prices` (index 0..n-1).
    """
    prices = prices.reset_index(drop=True)
    close = prices["close"]
    rsi = rsi_wilder(close, RSI_PERIOD)
    return pd.DataFrame(
        {
            "symbol": prices["symbol"],
            "trade_date": prices["trade_date"],
            **{f"sma_{window}": sma(close, window) for window in SMA_WINDOWS},
            "rsi_14": rsi["rsi_14"],
            "vwap_20": vwap_rolling(prices["high"], prices["low"], close, prices["volume"], VWAP_WINDOW),
            "daily_return": daily_return(close),
            "rsi_avg_gain_14": rsi["rsi_avg_gain_14"],
            "rsi_avg_loss_14": rsi["rsi_avg_loss_14"],
        },
        columns=INDICATOR_COLUMNS,
    )
