"""ml_collections config files; run one with
``python -m experiments.run --config=configs/<name>.py[:smoke]``."""
