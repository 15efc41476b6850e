"""ELECTRA replaced-token-detection pretraining: building examples (data, example_builder) and reading
them (train_data), masking, the RTD objective, metrics, the run's settings (config.PretrainConfig),
the fleet trainer (trainer, parallel, control, run_log) with resumable checkpoints (checkpoint), the
fixed-corruption evaluation, probes, and export to from_pretrained dirs."""
