"""Drop-in APIs for clients of other face services, each a thin layer over the Engine."""
