"""Caveats about the explanations: they qualify what the maps show, not the model."""

from imaudit.audits.findings import declare

declare(
    "unfaithful-explanation", "explainer", "Unfaithful explanation method",
    "Deleting pixels in the order this method ranks them hurts the model no more than random orders do, beyond "
    "the 95 % interval over the images: its maps do not show what the model uses.",
    "Do not draw conclusions from this method's maps; rely on methods that pass.",
)
declare(
    "failed-sanity-check", "explainer", "Failed sanity check",
    "The method's maps barely change when the model's blocks are randomised from the top (cascading "
    "randomisation): they show the image, not the model.",
    "Do not use this method's maps as evidence about the model.",
)
declare(
    "low-method-agreement", "explainer", "Methods disagree",
    "Explanation methods rank pixels differently. This is common and says more about the methods than the model; "
    "it never raises an audit's headline by itself.",
    "Prefer methods that pass faithfulness and sanity; no action on the model by itself.",
)
