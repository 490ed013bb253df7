"""LLM engines and the decoding machinery behind them."""
