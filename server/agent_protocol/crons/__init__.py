"""Crons: runs made on a schedule, on a thread or each on a thread of its own (stateless).

``schedule`` (croniter: checks, fire times), ``schemas`` (request bodies), ``service`` (create,
patch, list, delete, each checked as a run is), ``scheduler`` (fires due crons into the run queue,
once each across all server processes). Rows and the fire's transaction: ``storage/crons.py``.
"""
