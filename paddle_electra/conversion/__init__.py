"""Converters from HFL's released TensorFlow checkpoints and from HF PyTorch/safetensors weights."""
