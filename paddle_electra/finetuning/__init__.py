"""Fine-tuning as the original does it: dataset readers bound to the task specs of paddle_electra.tasks
(tasks.py), the hparams (config.py), the trial loop (trainer.py) and the finetune / evaluate commands
(cli.py)."""
