"""The operators' dashboard at /lamina/ui/ (routes.py: pages and fragments; views.py: what they show)."""
