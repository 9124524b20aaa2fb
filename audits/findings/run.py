"""Findings about the audit run itself: stages that failed, gates that could not run."""

from imaudit.audits.findings import declare

declare(
    "stage-failed", "run", "Stage failed",
    "A stage of the audit could not complete: what it checks was not checked.",
    "Read the error; fix the input or report the bug, then re-audit. A partial audit cannot pass its gate.",
)
declare(
    "gate-error", "run", "Data gate error",
    "A data or output check could not run.",
    "Read the error and re-audit.",
)
