"""resque-scheduler compatible delayed jobs and the scheduler's leader loop."""
