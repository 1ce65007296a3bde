"""API keys, short-lived tokens, scopes, tenants, rate limits and the audit log.

The API declares a policy on every route (``auth.policy``); the policy
authenticates the bearer (a key or a token minted from one), checks the
route's scope and the key's limits, and names the tenant whose data the
request may see. With no active keys at all, a loopback server serves every
request as tenant ``local`` with every scope, so a laptop needs no key.
"""
