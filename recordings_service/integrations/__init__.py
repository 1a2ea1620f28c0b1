"""The outside world's protocols: what Africa's Talking sends and expects."""
