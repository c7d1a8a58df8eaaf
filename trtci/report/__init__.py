"""Rendering: markdown from templates, the console table, the JSON summary, the dashboard."""
