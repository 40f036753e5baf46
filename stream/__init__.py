"""Stage ``stream``: PySpark Structured Streaming, ticks -> bars + indicators -> metrics."""
