"""The outside world: what Africa's Talking sends and expects, outbound HTTP, audio storage."""
