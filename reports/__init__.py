"""What people read: report.html, index.html and compare.html from AuditResults, and the review app.

What belongs here: rendering (Jinja2 templates, figures), the store index, the
comparison of two audits, the review app (FastAPI + SQLAlchemy) and its
database. What does not: computing anything about a model (audits/); reports
read AuditResult (audit.json) and the files beside it only.
"""
