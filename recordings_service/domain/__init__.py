"""The rules in plain Python: recording statuses and ids, and how calls move recordings along.

Nothing here imports Flask or SQLAlchemy or does I/O, so the rules can be read and tested on their own.
"""
