"""Side-by-side benchmark: our SRPO trainer vs TRL's GRPOTrainer on the quickstart's stage-1 task (cli.py)."""
