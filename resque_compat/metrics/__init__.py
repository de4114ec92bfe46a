"""Metrics of a running worker: the recorder, its HTTP endpoint and the StatsD/Graphite sinks."""
