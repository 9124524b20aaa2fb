"""Explanation quality: can a method's maps be trusted?

- faithfulness: deletion / insertion curves against a random order (Petsiuk et al. 2018, RISE)
- sanity: model-parameter randomisation (Adebayo et al. 2018, "Sanity checks for saliency maps")
- localisation: pointing game and relevance mass inside the object mask (Arras et al. 2022)
- agreement: rank correlation between methods per image, overall and per class

Everything is numpy/torch; maps are (N,H,W) arrays, models plain nn.Modules.
"""

from imaudit.audits.quality.agreement import agreement, rowwise_spearman
from imaudit.audits.quality.faithfulness import deletion_insertion, make_replacement
from imaudit.audits.quality.localisation import localisation
from imaudit.audits.quality.sanity import method_explain_fn, randomisation_sanity, randomise_top_layers

__all__ = [
    "agreement",
    "deletion_insertion",
    "localisation",
    "make_replacement",
    "method_explain_fn",
    "randomisation_sanity",
    "randomise_top_layers",
    "rowwise_spearman",
]
