"""imaudit: audits for image classifiers, run as Prefect flows.

What belongs in this folder: the small core every other package may use (the
CLI, errors, atomic file I/O, paths under IMAUDIT_HOME, the plug-in registry).
What does not belong here: audit logic (audits/), models (models/), Prefect tasks and
flows (tasks/, flows/), rendering (reports/).
"""

__version__ = "0.1.0"
