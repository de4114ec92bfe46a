"""The wire format, pure: Redis key names, JSON bytes and record shapes as Ruby Resque 3.0
writes them. Nothing here does I/O (tests/test_architecture.py forbids redis, gevent and socket)."""
