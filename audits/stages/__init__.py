"""The audit's stages: one module per stage, each a plain function ``run`` with typed records in and out.

In audit order (the flow, imaudit.flows.audit, calls them through one Prefect task each):

    identify         spec -> Identity (model + dataset identity, training history); writes manifest.csv
    check_data       spec -> GateReport (Great Expectations suite over the manifest)
    predict          spec -> PredictionOutcome; plan / chunk / assemble, chunks cached by content
    check_outputs    predictions -> GateReport (finite logits, valid probabilities)
    diagnose         predictions -> Diagnosis (metrics, calibration, fit verdict, findings)
    sample           predictions -> SampleOutcome (the val images every method explains); sample.csv
    explain          sample, method -> MethodRecord; plan / chunk / assemble, chunks cached by content
    gallery          records -> Gallery (image + overlays per sampled image, layer views)
    insights         records -> Insights (global importance, strategies, quality checks, findings)
    counterfactuals  predictions -> the generative section (when asked for)

then imaudit.audits.assemble turns the collected StageOutputs into the AuditResult.
Shared pieces: ``inputs`` (the model and dataset a spec names, loaded once per
process) and ``records`` (the typed records passed between stages).

What belongs here: the audit-specific glue that reads the work folder, calls the
engine (audits/predict, audits/explain, audits/quality, ...) and writes its
results. What does not: algorithms (they live in the engine modules and are
usable without a spec), Prefect (tasks/ and flows/), report rendering (reports/).
Stages import each other only downwards in the order above; none imports prefect.
"""
