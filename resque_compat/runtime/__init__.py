"""The worker process at run time: slots (worker), the fetcher, the runner, heartbeats,
pruning and autoscaling."""
