"""A small Django project (SQLite) for the Django integration's tests.

The test fixtures set the environment it reads: the database file and the
Redis key prefix, unique to the test session.
"""
