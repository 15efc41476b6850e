"""Fine-tuning as the original does it: Task plug-ins (tasks.py), the QA features and answer search
(qa.py), metrics (metrics.py) and the trainer loop (trainer.py)."""
