"""The rules of channel resources: config validated per type, secrets sealed or hashed,
shown masked, the runtime configuration the webhook verifies with."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from chatsessions import ids
from chatsessions.channels import store, vault
from chatsessions.channels.base import ChannelConfig, ConfigModel
from chatsessions.channels.registry import platform_of
from chatsessions.channels.schemas import ChannelIn, ChannelPatch
from chatsessions.channels.store import ChannelRow, Counts
from chatsessions.config import Settings
from chatsessions.errors import InvalidParameter, NotFound
from chatsessions.timeutil import format_ms
from chatsessions.web import invalid_from_validation

__all__ = [
    "channel_as_json",
    "create_channel",
    "delete_channel",
    "get_owned_channel",
    "runtime_config",
    "update_channel",
    "vault_of",
]

# Stands, during validation, for a hashed token that PATCH did not give (whose value we
# cannot know); the stored hash is kept.
_PLACEHOLDER = "unchanged"


_vaults: dict[tuple[str | None, str | None, str], vault.Vault] = {}


def vault_of(settings: Settings) -> vault.Vault:
    """The process's vault for these settings (the key file is read once)."""
    key = (settings.secret_key, settings.secret_key_file, settings.database_url)
    found = _vaults.get(key)
    if found is None:
        found = _vaults[key] = vault.load_vault(settings)
    return found


def _aad(user_id: str, channel_id: str) -> str:
    return f"channel/{user_id}/{channel_id}"


def _validate(channel_type: str, config: dict[str, Any]) -> ConfigModel:
    model = platform_of(channel_type).Config
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        raise invalid_from_validation(exc, "config") from None


def _sealed_columns(
    model: ConfigModel,
    *,
    box: vault.Vault,
    aad: str,
    keep_hash: tuple[str | None, str | None] | None = None,
) -> dict[str, Any]:
    """The ``config``, ``token_hash`` and ``secret_box`` columns of a validated config.
    ``keep_hash``: the stored (hash, mask) of a hashed token that was not given."""
    given = model.model_dump(exclude_none=True)
    plain = {name: given[name] for name in model.PLAIN_FIELDS if name in given}
    secret: dict[str, Any] = {}
    if model.HMAC_FIELD is not None:
        secret["hmac"] = given[model.HMAC_FIELD]
    token_hash = None
    if model.HASHED_FIELD is not None:
        if keep_hash is not None:
            token_hash, secret["tokenMask"] = keep_hash
        else:
            token = given[model.HASHED_FIELD]
            token_hash, secret["tokenMask"] = vault.hash_token(token), vault.mask(token)
    return {
        "config": orjson.dumps(plain).decode(),
        "token_hash": token_hash,
        "secret_box": box.seal(secret, aad=aad),
    }


async def create_channel(
    conn: AsyncConnection, *, user_id: str, body: ChannelIn, box: vault.Vault, now_ms: int
) -> ChannelRow:
    """Create a channel (400 naming ``config.<key>`` when its config is wrong)."""
    if not isinstance(body.config, dict):
        raise InvalidParameter("config", "must be an object")
    model = _validate(body.type, body.config)
    channel_id = ids.new_id()
    columns = _sealed_columns(model, box=box, aad=_aad(user_id, channel_id))
    row = ChannelRow(
        user_id=user_id,
        id=channel_id,
        type=body.type,
        name=(body.name or "").strip() or None,
        created_at_ms=now_ms,
        updated_at_ms=now_ms,
        **columns,
    )
    await store.insert_channel(conn, row)
    return row


async def get_owned_channel(conn: AsyncConnection, *, user_id: str, channel_id: str) -> ChannelRow:
    """The caller's channel, or 404 (another tenant's channel does not exist for them)."""
    row = await store.get_channel(conn, user_id, channel_id) if ids.is_id(channel_id) else None
    if row is None:
        raise NotFound("channel not found")
    return row


def _open(row: ChannelRow, box: vault.Vault) -> dict[str, Any]:
    if row.secret_box is None:
        return {}
    opened: dict[str, Any] = box.open(row.secret_box, aad=_aad(row.user_id, row.id))
    return opened


async def update_channel(
    conn: AsyncConnection,
    *,
    user_id: str,
    channel_id: str,
    body: ChannelPatch,
    box: vault.Vault,
    now_ms: int,
) -> ChannelRow:
    """Change the name and the config keys given; the rest of the config stays."""
    row = await get_owned_channel(conn, user_id=user_id, channel_id=channel_id)
    values: dict[str, Any] = {"updated_at_ms": now_ms}
    if "name" in body.model_fields_set:
        values["name"] = (body.name or "").strip() or None
    if body.config is not None:
        model_type = platform_of(row.type).Config
        try:
            secret = _open(row, box)
        except vault.SealedSecretError:
            # Sealed under another server key: the secrets must be given again (the
            # config is then checked as for a new channel), which repairs the channel.
            secret = {}
        merged: dict[str, Any] = dict(orjson.loads(row.config))
        if model_type.HMAC_FIELD is not None and "hmac" in secret:
            merged[model_type.HMAC_FIELD] = secret["hmac"]
        keep_hash = None
        if model_type.HASHED_FIELD is not None and model_type.HASHED_FIELD not in body.config:
            merged[model_type.HASHED_FIELD] = _PLACEHOLDER
            keep_hash = (row.token_hash, secret.get("tokenMask"))
        merged.update(body.config)
        model = _validate(row.type, merged)
        values.update(
            _sealed_columns(
                model,
                box=box,
                aad=_aad(user_id, channel_id),
                keep_hash=keep_hash,
            )
        )
    await store.update_channel(conn, user_id, channel_id, values)
    updated = await store.get_channel(conn, user_id, channel_id)
    assert updated is not None
    return updated


async def delete_channel(conn: AsyncConnection, *, user_id: str, channel_id: str) -> None:
    """Delete the caller's channel (404 when not theirs); its webhook answers 404 after."""
    await get_owned_channel(conn, user_id=user_id, channel_id=channel_id)
    await store.delete_channel(conn, user_id, channel_id)


# Opened configs by what they were opened from (the channel, its sealed secrets and plain
# config as stored, the vault): a rotated secret is another key, so an entry is never
# stale; the channel's ids are in the key as in the sealed box's associated data.
_OPENED: dict[tuple[str, str, str, str | None, str | None, str, int], ChannelConfig] = {}
_OPENED_MAX = 4096


def runtime_config(row: ChannelRow, box: vault.Vault) -> ChannelConfig:
    """What verification and translation need, secrets opened (once per stored version of
    the channel: decrypting and parsing per delivery was CPU for nothing)."""
    key = (row.user_id, row.id, row.type, row.secret_box, row.token_hash, row.config, id(box))
    found = _OPENED.get(key)
    if found is None:
        found = _runtime_config(row, box)
        if len(_OPENED) >= _OPENED_MAX:
            _OPENED.pop(next(iter(_OPENED)))
        _OPENED[key] = found
    return found


def _runtime_config(row: ChannelRow, box: vault.Vault) -> ChannelConfig:
    secret = _open(row, box)
    plain = orjson.loads(row.config)
    keys = secret.get("hmac")
    return ChannelConfig(
        type=row.type,
        hmac_keys=tuple([keys] if isinstance(keys, str) else keys or ()),
        token_hash=row.token_hash,
        account_id=plain.get("accountId"),
        public_url=plain.get("publicUrl"),
    )


def _masked_config(row: ChannelRow, box: vault.Vault) -> dict[str, Any]:
    model_type = platform_of(row.type).Config
    out: dict[str, Any] = dict(orjson.loads(row.config))
    try:
        secret = _open(row, box)
    except vault.SealedSecretError:
        secret = {"hmac": None, "tokenMask": None}  # shown as unreadable, not as an error
    if model_type.HMAC_FIELD is not None:
        keys = secret.get("hmac")
        if isinstance(keys, list):
            out[model_type.HMAC_FIELD] = [vault.mask(k) for k in keys]
        else:
            out[model_type.HMAC_FIELD] = vault.mask(keys) if isinstance(keys, str) else None
    if model_type.HASHED_FIELD is not None:
        out[model_type.HASHED_FIELD] = secret.get("tokenMask")
    return out


def channel_as_json(row: ChannelRow, counts: Counts, box: vault.Vault) -> dict[str, Any]:
    """The API shape of a channel: secrets masked, counters since creation."""
    return {
        "channelId": row.id,
        "type": row.type,
        "name": row.name,
        "webhookPath": f"/v1/channels/{row.id}/webhook",
        "createdAt": format_ms(row.created_at_ms),
        "updatedAt": format_ms(row.updated_at_ms),
        "config": _masked_config(row, box),
        "counters": {
            "received": counts.received,
            "stored": counts.stored,
            "duplicates": counts.duplicates,
            "ignored": counts.ignored,
            "rejected": counts.rejected,
            "lastEventAt": format_ms(counts.last_event_at_ms)
            if counts.last_event_at_ms is not None
            else None,
            "lastError": counts.last_error,
            "lastErrorAt": format_ms(counts.last_error_at_ms)
            if counts.last_error_at_ms is not None
            else None,
        },
    }
