"""API keys and tokens through the real app: the keyless laptop mode, the
401s a wrong, expired or revoked key gets, rotation, JWTs, the openai SDK,
the CLI, and where the server may bind."""

from __future__ import annotations

import stat
import time
from datetime import timedelta

import httpx
import openai
import pytest
from click.testing import CliRunner
from jose import jwt

from auth import tokens
from server.bind_policy import check_bind
from server.cli import cli
from server.errors import ConfigError
from server.settings import Settings
from tests import authutil
from tests.authutil import bearer, running

database_url = authutil.database_url
settings = authutil.settings

pytestmark = pytest.mark.timeout(120)


def assert_401(reply: httpx.Response, *, says: str) -> None:
    assert reply.status_code == 401, reply.text
    assert reply.headers["www-authenticate"] == 'Bearer realm="hearth"'
    error = reply.json()["error"]
    assert set(reply.json()) == {"error"}
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_api_key",
        None,
    )
    assert says in error["message"]


async def test_without_keys_everyone_is_local_and_any_bearer_is_ignored(settings):
    async with running(settings) as api:
        for headers in ({}, bearer("hearth-local"), bearer("hk-0000.nonsense")):
            reply = await api.client.get("/v1/models", headers=headers)
            assert reply.status_code == 200, reply.text

        # The keyless user is the operator: it may make the first key.
        made = await api.client.post(
            "/admin/keys", json={"tenant": "acme", "scopes": ["inference"]}
        )
        assert made.status_code == 201
        assert made.json()["key"].startswith(f"hk-{made.json()['id']}.")

        # From now on a key is required.
        assert_401(await api.client.get("/v1/models"), says="Missing API key")
        reply = await api.client.get("/v1/models", headers=bearer(made.json()["key"]))
        assert reply.status_code == 200


async def test_health_probes_need_no_key(settings):
    async with running(settings) as api:
        await api.key("acme", "inference")
        assert (await api.client.get("/healthz")).status_code == 200
        assert (await api.client.get("/readyz")).status_code in (200, 503)
        assert_401(await api.client.get("/openapi.json"), says="Missing API key")


async def test_wrong_expired_and_revoked_keys_are_401(settings):
    async with running(settings) as api:
        good, _ = await api.key("acme", "inference,admin")
        expired, expired_id = await api.key(
            "acme", "inference", expires_in=timedelta(seconds=-1)
        )
        revoked, revoked_id = await api.key("acme", "inference")
        reply = await api.client.post(
            f"/admin/keys/{revoked_id}/revoke", headers=bearer(good)
        )
        assert reply.status_code == 200 and reply.json()["status"] == "revoked"

        key_id = good.split(".")[0]
        cases = [
            (f"{key_id}.{'x' * 43}", "Incorrect API key"),
            ("hk-ffffffffffffffff." + "y" * 43, "Incorrect API key"),
            ("sk-not-ours", "Incorrect API key"),
            (expired, f"API key '{expired_id}' expired at"),
            (revoked, f"API key '{revoked_id}' has been revoked"),
        ]
        for key, says in cases:
            reply = await api.client.get("/v1/models", headers=bearer(key))
            assert_401(reply, says=says)
            # The secret is never echoed back.
            assert key.split(".")[-1] not in reply.text
        assert (
            await api.client.get("/v1/models", headers=bearer(good))
        ).status_code == 200


async def test_rotation_replaces_the_secret(settings):
    async with running(settings) as api:
        admin, admin_id = await api.key("acme", "admin")
        reply = await api.client.post(
            f"/admin/keys/{admin_id}/rotate", headers=bearer(admin)
        )
        assert reply.status_code == 201
        new = reply.json()
        assert new["rotated_from"] == admin_id and new["scopes"] == ["admin"]

        assert_401(
            await api.client.get("/admin/keys", headers=bearer(admin)),
            says="has been revoked",
        )
        listed = await api.client.get("/admin/keys", headers=bearer(new["key"]))
        status = {k["id"]: k["status"] for k in listed.json()["data"]}
        assert status == {admin_id: "revoked", new["id"]: "active"}
        assert all(
            "key" not in k and "secret" not in str(k) for k in listed.json()["data"]
        )


async def test_last_used_time_is_recorded(settings):
    async with running(settings) as api:
        key, key_id = await api.key("acme", "admin")
        before = await api.client.get(f"/admin/keys/{key_id}", headers=bearer(key))
        # The first use is the request itself; the row shows it afterwards.
        after = await api.client.get(f"/admin/keys/{key_id}", headers=bearer(key))
        assert after.json()["last_used_at"] is not None
        assert before.status_code == 200


async def test_the_openai_sdk_authenticates_unchanged(settings):
    async with running(settings) as api:
        key, _ = await api.key("acme", "inference")
        transport = httpx.ASGITransport(app=api.app)

        def client(api_key: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(
                base_url="http://hearth.test/v1",
                api_key=api_key,
                http_client=httpx.AsyncClient(transport=transport),
                max_retries=0,
            )

        async with client(key) as good:
            models = await good.models.list()
            assert "smollm2-135m-instruct" in [m.id for m in models.data]

        async with client("hk-0123456789abcdef." + "z" * 43) as bad:
            with pytest.raises(openai.AuthenticationError) as refused:
                await bad.models.list()
        assert refused.value.status_code == 401
        assert refused.value.code == "invalid_api_key"


async def test_tokens_are_minted_from_keys_and_checked(settings):
    async with running(settings) as api:
        key, key_id = await api.key("acme", "admin,inference")
        minted = await api.client.post(
            "/auth/token", json={"scopes": ["inference"]}, headers=bearer(key)
        )
        assert minted.status_code == 200, minted.text
        token = minted.json()["access_token"]
        assert minted.json()["scope"] == "inference"
        assert minted.json()["token_type"] == "bearer"

        assert (
            await api.client.get("/v1/models", headers=bearer(token))
        ).status_code == 200
        # The token holds only what it asked for.
        reply = await api.client.get("/admin/keys", headers=bearer(token))
        assert reply.status_code == 403
        assert reply.json()["error"]["code"] == "insufficient_scope"
        # Tokens do not mint tokens.
        assert (
            await api.client.post("/auth/token", headers=bearer(token))
        ).status_code == 400

        secret = api.app.state.auth.jwt_secret
        now = int(time.time())
        claims = {"iss": tokens.ISSUER, "aud": tokens.AUDIENCE, "sub": key_id,
                  "tenant": "acme", "scope": "inference", "iat": now}  # fmt: skip
        forged = {
            "expired": jwt.encode({**claims, "exp": now - 5}, secret, "HS256"),
            "wrong audience": jwt.encode(
                {**claims, "aud": "other", "exp": now + 60}, secret, "HS256"
            ),
            "wrong secret": jwt.encode({**claims, "exp": now + 60}, "x" * 40, "HS256"),
            "other algorithm": jwt.encode({**claims, "exp": now + 60}, secret, "HS512"),
            "alg none": _unsigned({**claims, "exp": now + 60}),
            "other tenant": jwt.encode(
                {**claims, "tenant": "globex", "exp": now + 60}, secret, "HS256"
            ),
        }
        for case, bad in forged.items():
            reply = await api.client.get("/v1/models", headers=bearer(bad))
            assert reply.status_code == 401, case
            assert reply.json()["error"]["code"] == "invalid_api_key", case

        # Revoking the key ends its tokens too. (Another key stays active:
        # with none left the server would be keyless again.)
        await api.key("acme", "read")
        await api.client.post(f"/admin/keys/{key_id}/revoke", headers=bearer(key))
        assert_401(
            await api.client.get("/v1/models", headers=bearer(token)),
            says="has been revoked",
        )


def _unsigned(claims: dict) -> str:
    import base64
    import json

    def part(data: dict) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def test_the_jwt_secret_file_is_private(settings):
    async with running(settings):
        pass
    path = settings.data_dir / tokens.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    async with running(settings):
        pass
    assert path.read_text() == first


async def test_a_public_address_without_keys_serves_nobody(settings):
    public = settings.model_copy(update={"host": "0.0.0.0"})
    async with running(public) as api:
        assert_401(await api.client.get("/v1/models"), says="no active API keys")


def test_binding_elsewhere_needs_keys_or_the_flag(database_url):
    import asyncio

    from server.db import create_pool

    public = Settings(host="0.0.0.0", database_url=database_url)
    with pytest.raises(ConfigError) as refused:
        check_bind(public)
    assert "hearth keys create" in refused.value.message

    async def add_key() -> None:
        from auth import keys

        pool = await create_pool(database_url)
        async with pool.acquire() as conn:
            await keys.create_key(conn, tenant="acme", scopes=("inference",))
        await pool.close()

    asyncio.run(add_key())
    check_bind(public)


def test_the_cli_manages_keys_and_reads_the_audit_log(database_url):
    runner = CliRunner()
    db = ["--database-url", database_url]

    made = runner.invoke(
        cli,
        ["keys", "create", *db, "--tenant", "acme", "--scopes", "inference,read",
         "--name", "ci", "--expires-in", "30", "--rpm", "60"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    assert key.startswith("hk-") and "not shown again" in made.stderr
    key_id = key[3:].split(".")[0]

    listed = runner.invoke(cli, ["keys", "list", *db, "--json"])
    assert listed.exit_code == 0
    assert key.split(".")[1] not in listed.output
    assert (
        f'"id": "{key_id}"' in listed.output and '"status": "active"' in listed.output
    )

    rotated = runner.invoke(cli, ["keys", "rotate", *db, key_id])
    assert rotated.exit_code == 0, rotated.output
    new_id = rotated.stdout.strip()[3:].split(".")[0]
    revoked = runner.invoke(cli, ["keys", "revoke", *db, new_id])
    assert revoked.exit_code == 0 and f"Revoked key {new_id}" in revoked.output

    limits = runner.invoke(cli, ["limits", *db, "--tenant", "acme", "--tpd", "1000"])
    assert limits.exit_code == 0 and '"tokens_per_day": 1000' in limits.output

    bad = runner.invoke(cli, ["keys", "create", *db, "--tenant", "acme",
                              "--scopes", "root"])  # fmt: skip
    assert bad.exit_code == 1 and "Unknown scope(s) 'root'" in bad.output

    audit = runner.invoke(cli, ["audit", *db])
    actions = [line.split("\t")[4] for line in audit.output.strip().splitlines()]
    assert actions == ["key.revoke", "key.rotate", "key.create"]
