"""ELECTRA replaced-token-detection pretraining: example builder (data), masking, the RTD objective,
metrics, the fleet trainer with resumable checkpoints, and export to from_pretrained dirs."""
