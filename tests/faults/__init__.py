"""The fault suite (issue 5 item 7): real worker processes, real Redis, real faults.

Every scenario streams uniquely identified ``FaultJob`` jobs through real ``resque-py work``
processes, breaks something for real (``kill -9``, a Redis restart, a stalled or cut TCP link, a
signal under load), then settles the books from two sides: what the jobs themselves recorded on
the control Redis (the shared test DB, which no scenario restarts) and what Redis holds (failed
list, queues, ``worker:<id>``). Each prints one line, enqueued / processed ok / failed / re-run /
lost, and asserts that nothing was lost and nothing was handled twice.

``FAULTS_SCALE=full`` (``make faults``) runs the sizes the issue asks for (10,000 jobs, 20 kills,
a 30 s outage); unset, a short version runs inside ``make test``.
"""
