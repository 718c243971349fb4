"""agon's benchmarks: ``python -m benchmarks`` (``make bench``) and the standalone scripts."""
