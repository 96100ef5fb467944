"""What a network is and what it costs: config, presets, model, cost, summary. Imports nothing above it."""
