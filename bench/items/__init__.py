"""One module per benchmark item of issue 8; each exposes `measure(bench) -> Figure`."""
