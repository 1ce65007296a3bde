"""The dashboard's static files, served at /ui by server.routes.ui."""
