"""The resque-py command: common helpers plus one module per command family."""
