"""Tables and transactions: the models, the engine's tuning, and the one way writes are made."""
