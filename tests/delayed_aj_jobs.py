"""The Rails job of fixture 08b, for a worker started with ``-r tests/delayed_aj_jobs.py``.

Kept out of ``delayed_jobs.py``, which the tests also import in-process, so that this
``AjJob`` never meets another test file's ``AjJob`` in one registry.
"""
from __future__ import annotations

from resque_compat import job
from tests.delayed_jobs import control


@job("AjJob")
def aj_job(*args, **kwargs):
    control().rpush("test:ran", "AjJob:" + repr([list(args), kwargs]))
