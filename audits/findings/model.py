"""Findings about the model itself: fit, calibration, classes, outputs, shortcuts."""

from imaudit.audits.findings import declare

declare(
    "overfitting", "model", "Overfitting",
    "The model does much better on its training images than on validation images: it has memorised "
    "part of its training set, and accuracy in use will be nearer the validation number or lower.",
    "Compare train and val accuracy and loss in Performance; retrain with more data, augmentation, "
    "regularisation or early stopping before release.",
)
declare(
    "underfitting", "model", "Underfitting",
    "The model cannot even fit its training images: it has not learned the task.",
    "Check the training run (learning rate, epochs, labels) and that the checkpoint is the trained one.",
)
declare(
    "miscalibration", "model", "Miscalibrated confidence",
    "The model's confidence does not match how often it is right (expected calibration error above the "
    "limit): thresholds and downstream decisions that use its probabilities will be wrong.",
    "Look at the reliability diagram; calibrate (temperature scaling on held-out data) before release.",
)
declare(
    "weak-class", "model", "Weak class",
    "One class is recognised much less often than the others: users of that class get a worse model.",
    "Check the per-class table and the confusions of that class; add or relabel its data.",
)
declare(
    "shortcut", "model", "Shortcut",
    "A place in the image (a corner, a stamp, the background) that a class's explanations single out. As an "
    "error it is confirmed on the model: covering it costs the class accuracy and pasting it into other images "
    "flips them to the class, so the model relies on that cue and will fail where it is absent. As info it is a "
    "candidate the model turned out not to depend on.",
    "Error: look at the box in the example images, remove the cue from the data (crop, in-paint, randomise it "
    "across classes) and retrain; a confirmed shortcut should block the release. Info: no action on the model.",
)
declare(
    "nonfinite-outputs", "model", "Non-finite outputs",
    "The model produced NaN or infinite logits for some images: its numbers cannot be trusted there.",
    "Run the listed images through the model; check the checkpoint and numerical precision.",
)
declare(
    "invalid-probabilities", "model", "Invalid probabilities",
    "The model's probabilities fall outside [0, 1] or do not sum to 1.",
    "Check the model's final layer and the listed images.",
)
declare(
    "invalid-class-index", "model", "Invalid class index",
    "Predictions point at classes the dataset does not have.",
    "Check that the model's outputs map onto the dataset's classes.",
)
declare(
    "counterfactual-hotspot", "model", "Counterfactuals change one small region",
    "GAN counterfactuals (what an image would need to look like to be another class) put most of their change "
    "into the same small region across images, and no other check named that region: the model may depend on "
    "something that sits there rather than on the object.",
    "Open the Counterfactuals section: look at the change maps and boxes and at what the images hold in that "
    "box; run the shortcut checks (explanations) on it and, if it is a cue, remove it from the data and retrain.",
)
