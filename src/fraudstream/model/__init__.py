"""The learned risk model: training (`train`), the model file (`file`) and scoring (`score`)."""
