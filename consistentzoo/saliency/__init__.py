"""saliency (see DESIGN.md)."""
