"""The security layer's routes: keys, tokens, usage and audit views."""

from auth.routes import audit, keys, token, usage

routers = [token.router, keys.router, usage.router, audit.router]
