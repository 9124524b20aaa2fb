"""Prefect tasks: each a one-call @task around a step of an audit stage (imaudit.audits.stages).

What belongs here: task declarations (names, retries for I/O, cache policy).
What does not: logic or data shaping (that is the stage's job), flow control
(flows/). Tasks pass refs, paths and small typed records, never
an nn.Module or a large array.
"""
