"""The `fraudstream` command: what a person sees is decided here, nowhere else."""
