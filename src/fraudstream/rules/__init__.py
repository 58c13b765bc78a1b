"""Live rule changes: versioned rule settings, checked, published on the rules topic, backtested."""
