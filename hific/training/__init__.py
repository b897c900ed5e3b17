"""Training: the two-stage loop, distributed setup, logging and validation."""
