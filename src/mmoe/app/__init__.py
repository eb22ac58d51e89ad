"""The user's tool: a run's settings (TOML + flags), training to a model directory,
evaluation, prediction, export, the gate report, and the scikit-learn estimator."""
