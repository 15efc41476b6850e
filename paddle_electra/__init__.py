"""Chinese ELECTRA for PaddlePaddle."""
