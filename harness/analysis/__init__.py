"""Analyses over stored scores: statistics (stats.py); overfitting and regression gates come later."""
