"""hub (see DESIGN.md)."""
