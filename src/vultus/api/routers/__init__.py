"""One router per resource; each endpoint a thin call into the Engine."""
