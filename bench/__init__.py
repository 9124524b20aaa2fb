"""`imaudit bench`: benchmarks, not tests.

What belongs here: measuring throughput against the model's own peak, the
libraries' default execution, cold against warm audits and Prefect's overhead,
printed as tables in one run. What does not: assertions about speed (tests never
time anything) or code the audit needs (bench imports the engine, never the
other way).
"""
