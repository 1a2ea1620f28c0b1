"""What the tests and the benchmarks share: the service run as operators run it, real HTTP peers on
loopback, and generated Africa's Talking traffic. Not part of the service."""
