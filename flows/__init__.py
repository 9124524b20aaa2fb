"""Prefect flows: the audit, audits on release and on a schedule, plus the release command and the demo.

What belongs here: orchestration (which tasks run in which order, in turn or
on Dask; what a failed stage means for the rest) and the flows' entry points
named in prefect.yaml. What does not: stage logic (audits/stages), task
declarations (tasks/), report layout (reports/).
"""
