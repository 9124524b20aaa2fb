"""The audit engine: plain Python + torch, usable without Prefect.

What belongs here: everything an audit computes. The stages (audits/stages,
one module per stage with typed records), the algorithms they call (data
sources and manifests, prediction, diagnosis, explanation methods, global
importance, quality checks, generative counterfactuals), the finding kinds,
the content-addressed cache, AuditSpec and AuditResult (the audit.json record).
What does not: Prefect (tasks/ and flows/ wrap this package; nothing here
imports prefect), model loading (models/), rendering (reports/), the CLI.
"""
