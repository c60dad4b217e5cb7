"""Settings: one dataclass per job, and how flags, environment and defaults fill it."""
