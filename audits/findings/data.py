"""Findings about the dataset the audit ran on."""

from imaudit.audits.findings import declare

declare(
    "data-leakage", "data", "Data leakage",
    "The same image is in more than one split: validation numbers are inflated by images the model trained on.",
    "Remove the listed duplicates from one split and re-audit.",
)
declare(
    "class-imbalance", "data", "Class imbalance",
    "Some classes have many times more images than others: accuracy is dominated by the large classes.",
    "Read per-class recall rather than overall accuracy; rebalance or collect data for small classes.",
)
declare(
    "corrupt-images", "data", "Unreadable images",
    "Some files could not be read and were left out: the audit did not see them.",
    "Fix or remove the listed files.",
)
declare(
    "empty-class", "data", "Empty class",
    "A class has no images in a split: nothing can be said about it there.",
    "Add images of that class to the split.",
)
declare(
    "unknown-labels", "data", "Unknown labels",
    "Some images carry labels outside the class list.",
    "Correct the labels or the class list.",
)
declare(
    "duplicate-ids", "data", "Duplicate ids",
    "Two images share an id, so results cannot be attributed to one file.",
    "Rename the files.",
)
declare(
    "duplicate-images", "data", "Duplicate images",
    "The same image appears more than once within a split: it counts twice in the metrics.",
    "Remove the duplicates.",
)
declare(
    "odd-image-modes", "data", "Unusual image modes or sizes",
    "Images come in several modes or sizes; they are converted, but that may differ from production input.",
    "Check that production images are converted the same way.",
)
declare(
    "no-eval-split", "data", "No evaluation split",
    "The dataset has no val or test images: the audit can only say how the model fits its training images.",
    "Add a val split (split folders, a split column, or enough images per class for the automatic 80/20 split).",
)
declare(
    "tiny-class", "data", "Classes with very few images",
    "Some classes have only a handful of images in the evaluated split: their per-class numbers mean little.",
    "Collect more images of those classes before trusting their recall, precision or confusion rows.",
)
declare(
    "small-sample", "data", "Fewer images than the explanation sample",
    "The evaluated split holds fewer images than each explanation method was asked to explain.",
    "Read the explanation sections as resting on the few images there are, or add val images.",
)
