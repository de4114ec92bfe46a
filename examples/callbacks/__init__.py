"""The callbacks demo: a Resque job that POSTs stored payloads to URLs, sharing MySQL and HTTP pools.

``jobs.py`` has the job and helpers to create and fill the table, ``schema.sql`` the table and
``endpoint.py`` a local callback receiver that answers after a fixed delay.
"""
