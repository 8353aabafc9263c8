"""Daily point-in-time features (user, video, creator)."""
