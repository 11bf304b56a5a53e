"""`routeiq keys ...` and `routeiq teams ...`: manage virtual keys in the database a config
names (keys.database), without a running gateway. Output is JSON; a generated key is
printed once. Running gateways see a change within keys.cache_ttl_s."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from routeiq.config import ConfigError, load_config
from routeiq.gateway.identity import database_url
from routeiq.identity.database import Database, DatabaseUnavailable
from routeiq.identity.keys import KeyRequestError, KeyStore, VirtualKey, duration_s
from routeiq.identity.spend import SpendLedger


def add_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="virtual keys: generate, list, info, update, regenerate, block, unblock, delete, spend")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)

    def command(name: str, help_text: str, needs_key: bool = True, settings: bool = False) -> argparse.ArgumentParser:
        p = keys_sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="the gateway's config file (its keys.database is used)")
        if needs_key:
            p.add_argument("key", help="the key (sk-...), its token (sha256) or its alias")
        if settings:
            p.add_argument("--alias", dest="key_alias")
            p.add_argument("--user", dest="user_id")
            p.add_argument("--team", dest="team_id")
            p.add_argument("--models", help="comma-separated model groups (empty: all)")
            p.add_argument("--routes", help="comma-separated path prefixes or route names (empty: all)")
            p.add_argument("--max-budget", type=float, dest="max_budget")
            p.add_argument("--budget-duration", dest="budget_duration", help="e.g. 30d, 1h")
            p.add_argument("--rpm", type=int, dest="rpm_limit")
            p.add_argument("--tpm", type=int, dest="tpm_limit")
            p.add_argument("--duration", help="expires this long from now, e.g. 30d")
            p.add_argument("--metadata", help="a JSON object")
        p.set_defaults(func=_keys)
        return p

    command("generate", "create a key (printed once)", needs_key=False, settings=True)
    command("list", "list keys", needs_key=False).add_argument("--team", dest="team_id")
    command("info", "one key's settings and spend")
    command("update", "change a key's settings", settings=True)
    command("regenerate", "rotate a key: a new key with the same settings; the old one stops working")
    command("block", "block a key")
    command("unblock", "unblock a key")
    command("delete", "delete a key")
    spend = command("spend", "spend per key, team, model or day", needs_key=False)
    spend.add_argument("--by", choices=["key", "team", "model", "day"], default="key")

    teams = sub.add_parser("teams", help="teams of virtual keys: new, list")
    teams_sub = teams.add_subparsers(dest="teams_command", required=True)
    new = teams_sub.add_parser("new", help="create a team")
    new.add_argument("--config", required=True)
    new.add_argument("--id", dest="team_id")
    new.add_argument("--alias", dest="team_alias")
    new.add_argument("--models")
    new.add_argument("--max-budget", type=float, dest="max_budget")
    new.add_argument("--budget-duration", dest="budget_duration")
    new.add_argument("--rpm", type=int, dest="rpm_limit")
    new.add_argument("--tpm", type=int, dest="tpm_limit")
    new.set_defaults(func=_teams)
    listed = teams_sub.add_parser("list", help="list teams")
    listed.add_argument("--config", required=True)
    listed.set_defaults(func=_teams)


def _open(config_path: str) -> Database:
    config = load_config(config_path)
    state_dir = config.resolve(config.model.admin.state_dir)
    db = Database(database_url(config, state_dir), config.base_dir, config.model.keys.database_timeout_s)
    db.migrate()
    return db


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("key_alias", "user_id", "team_id", "team_alias", "max_budget", "budget_duration", "rpm_limit", "tpm_limit"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    for name in ("models", "routes"):
        value = getattr(args, name, None)
        if value is not None:
            values[name] = [v for v in value.split(",") if v]
    if getattr(args, "duration", None):
        values["expires_at"] = time.time() + (duration_s(args.duration) or 0)
    if getattr(args, "metadata", None):
        values["metadata"] = json.loads(args.metadata)
    return values


def _view(key: VirtualKey) -> dict[str, Any]:
    view = key.public()
    view["token"] = view.pop("token_hash")
    return view


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        db = _open(args.config)
    except (ConfigError, DatabaseUnavailable) as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    try:
        body(db)
        return 0
    except (KeyRequestError, ValueError) as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"routeiq: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()


def _keys(args: argparse.Namespace) -> int:
    def body(db: Database) -> None:
        store = KeyStore(db)
        cmd = args.keys_command
        if cmd == "generate":
            token, key = store.generate(**_settings(args))
            _print({"key": token, **_view(key)})
            return
        if cmd == "list":
            _print([_view(k) for k in store.list_keys(getattr(args, "team_id", None))])
            return
        if cmd == "spend":
            column = {"key": "token_hash", "team": "team_id", "model": "model_group", "day": "day"}[args.by]
            _print(SpendLedger.totals(db, column))
            return
        key = store.find(args.key)
        if key is None:
            raise LookupError(f"no key {args.key if not args.key.startswith('sk-') else args.key[:6] + '...'}")
        if cmd == "info":
            _print(_view(key))
        elif cmd == "update":
            _print(_view(store.update(key.token_hash, **_settings(args))))
        elif cmd == "regenerate":
            token, fresh = store.regenerate(key.token_hash)
            _print({"key": token, **_view(fresh)})
        elif cmd in ("block", "unblock"):
            _print(_view(store.update(key.token_hash, blocked=cmd == "block")))
        elif cmd == "delete":
            store.delete([key.token_hash])
            _print({"deleted_keys": [key.token_hash]})

    return _run(args, body)


def _teams(args: argparse.Namespace) -> int:
    def body(db: Database) -> None:
        store = KeyStore(db)
        if args.teams_command == "new":
            values = _settings(args)
            _print(store.new_team(values.pop("team_id", None), **values).public())
        else:
            _print([t.public() for t in store.list_teams()])

    return _run(args, body)


__all__ = ["add_commands"]
