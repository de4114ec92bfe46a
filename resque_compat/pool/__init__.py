"""The process pool: the supervisor and resque-pool's YAML config."""
