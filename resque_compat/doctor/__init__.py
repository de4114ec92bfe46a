"""``resque-py doctor``: checks a shared Resque keyspace for what breaks Ruby workers and
resque-web or loses jobs (:mod:`.checks`), and applies Ruby's own safe repairs (:mod:`.repair`)."""
