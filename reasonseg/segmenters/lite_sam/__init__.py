"""LiteSAM (the embedded default): graph contracts, runners, precision choice."""
