"""The mini benchmarks (glyphs32, digits): data, settings, the per-seed pipeline, gates, source models, report."""
