"""Local stand-ins for the outside world (mock Alpha Vantage, Slack catcher, demo data).

Used by the tests and by the local demo stack. Every server here binds 127.0.0.1 only.
"""
