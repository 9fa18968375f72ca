"""Losses, rewards and policy objectives of the three papers, as pure tensor functions (tested by hand values)."""
