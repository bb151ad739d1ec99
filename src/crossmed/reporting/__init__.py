"""Documents people read: Markdown and self-contained HTML for the validation report, the model card and the data card."""
