"""The HTTP layer: app factory (the composition root), routes, error handlers."""
