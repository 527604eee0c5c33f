"""Model files: the registry of profiles (real and tiny) and the builders of the tiny models."""
