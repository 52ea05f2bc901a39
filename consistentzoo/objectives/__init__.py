"""objectives (see DESIGN.md)."""
