"""Explanation methods: one module per method, each registering its Explainer in ``EXPLAINERS``.

Adding a method is adding one file here: a subclass of
imaudit.audits.explain.base.Explainer with a ``name``, documented ``defaults``
and ``_attribute`` for a batch, decorated with ``@EXPLAINERS.register()``. The
registry (imaudit.registry) imports every module of this package the first
time it is asked, so ``--methods NAME``, the audit and the tests parametrised
over the registry (tests/explain) pick it up with no other edit.

What belongs here: the methods. What does not: what all methods share
(base.py: frozen parameters, batching, out-of-memory back-off, failure
isolation), lookup by name (registry.py), running a method over an audit's
sample (audits/stages/explain.py).
"""

from __future__ import annotations

from imaudit.audits.explain.base import Explainer
from imaudit.registry import Registry

EXPLAINERS: Registry[type[Explainer]] = Registry("explanation method", package="imaudit.audits.explain.methods")
