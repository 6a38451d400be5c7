"""The recommender models, their tuning and their evaluation."""
