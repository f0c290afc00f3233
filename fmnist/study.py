"""The numbers the study reports (/work/shared/study), to hold the served models against.

The study's text is not consistent with itself, and the report says so: the summary table
gives 92.23% test accuracy for both models while the sentence below it says 92.31%, and it
calls all footwear "more than 98%" while its own per-class table lists 97.2-97.7%. The
per-class table does not say which model it belongs to.
"""

from __future__ import annotations

EPOCHS = 20
# The study's summary table, row by row (training.report prints it beside our runs).
SUMMARY_TABLE = {
    "baseline": {
        "best_val_acc": 0.9288,
        "best_epoch": 16,
        "final_val_acc": 0.9267,
        "final_train_acc": 0.9585,
        "test_acc": 0.9223,
    },
    "deeper": {
        "best_val_acc": 0.9295,
        "best_epoch": 20,
        "final_val_acc": 0.9295,
        "final_train_acc": 0.9800,
        "test_acc": 0.9223,
    },
}
TEST_ACCURACY = {name: row["test_acc"] for name, row in SUMMARY_TABLE.items()}
PER_CLASS_ACCURACY = {
    "T-shirt/top": 0.878,
    "Trouser": 0.989,
    "Pullover": 0.887,
    "Dress": 0.930,
    "Coat": 0.893,
    "Sandal": 0.976,
    "Shirt": 0.743,
    "Sneaker": 0.972,
    "Bag": 0.978,
    "Ankle boot": 0.977,
}
HARDEST_CLASS = "Shirt"
CLAIM_SAME = "both models perform the same (92.23% test accuracy each)"
BEYOND = (
    "beyond the study: the study trained and reported only baseline and deeper, so there "
    "is no study number to hold it against"
)
INCONSISTENCIES = (
    "the summary table gives 92.23% for both models, the sentence after it 92.31%",
    "footwear is called 'more than 98%' accurate, the per-class table lists 97.2-97.7%",
    "the per-class table does not say which of the two models it describes",
)
