//! gram-train: Candle training (see issue 5).
