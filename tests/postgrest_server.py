"""A stand-in for PostgREST's RPC endpoint, for the tests: the real server is not in Debian
and no package registry this project reaches ships its binary, so this serves POST (and GET)
/rpc/<function> over real HTTP on loopback and sends PostgreSQL what PostgREST 12 sends for
such a request (docs/clients.md, "PostgREST", says what this covers and what it does not):

- one connection, logged in as the authenticator role (NOINHERIT, a member of the web roles);
- per request one transaction (READ ONLY for GET), which first sets, transaction-locally,
  search_path to the exposed schema, `role` to the JWT's `role` claim (the anonymous role
  without a JWT), `request.jwt.claims` to the claims as JSON, and request.method,
  request.path, request.headers, request.cookies;
- then the function of the exposed schema, found in pg_proc by name and by the argument
  names the JSON body has (404 PGRST202 otherwise), called with named arguments read from the
  body by json_to_recordset, as PostgREST does; a function returning rows answers a JSON array,
  a scalar one its JSON value;
- a JWT is verified (HS256 with the shared secret) before anything reaches the database: a
  bad signature is 401 PGRST301; errors map to HTTP statuses by SQLSTATE as PostgREST's do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl, urlsplit

import psycopg
from psycopg import sql


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict, secret: str) -> str:
    """An HS256 JWT, as an identity provider (Supabase Auth, Auth0, ...) would issue it."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(signature.digest())}"


def verify_jwt(token: str, secret: str) -> dict | None:
    try:
        header, payload, signature = token.split(".")
        expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
        if not hmac.compare_digest(_b64(expected.digest()), signature):
            return None
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None


def http_status(sqlstate: str, anonymous: bool) -> int:
    """PostgREST's mapping of SQLSTATE to HTTP status (the common classes)."""
    if sqlstate == "42501":
        return 401 if anonymous else 403
    if sqlstate in ("42883", "42P01"):
        return 404
    if sqlstate.startswith(("22", "P0")) or sqlstate == "23502":
        return 400
    if sqlstate.startswith("23"):
        return 409
    if sqlstate.startswith("08"):
        return 503
    return 500


class PostgrestStandIn:
    def __init__(self, conninfo: str, schema: str, anon_role: str, jwt_secret: str) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.schema, self.anon_role, self.jwt_secret = schema, anon_role, jwt_secret
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self.server = HTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.conn.close()

    def _function(self, name: str, args: set[str]):
        """The exposed function `name` whose named arguments cover `args` (PostgREST's schema
        cache): its arguments' names and types, and whether it returns a set."""
        rows = self.conn.execute(
            "SELECT coalesce(p.proargnames, '{}'), p.pronargs, p.pronargdefaults,"
            " ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t), p.proretset"
            " FROM pg_proc AS p WHERE p.pronamespace = %s::regnamespace AND p.proname = %s",
            (self.schema, name)).fetchall()
        for names, nargs, ndefaults, types, retset in rows:
            names = list(names[:nargs])
            required = set(names[:nargs - ndefaults])
            if required <= args <= set(names):
                return dict(zip(names, types, strict=True)), retset
        return None

    def call(self, method: str, path: str, headers: dict, body: dict) -> tuple[int, object]:
        name = path.removeprefix("/rpc/")
        claims = {"role": self.anon_role}
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            claims = verify_jwt(auth[7:], self.jwt_secret)
            if claims is None:
                return 401, {"code": "PGRST301", "message": "JWSError JWSInvalidSignature"}
        role = claims.get("role", self.anon_role)
        anonymous = role == self.anon_role
        with self.lock:
            found = self._function(name, set(body))
            if found is None:
                return 404, {"code": "PGRST202", "message": f"Could not find the function "
                             f"{self.schema}.{name}({', '.join(sorted(body))}) in the schema "
                             "cache"}
            arg_types, retset = found
            passed = [a for a in arg_types if a in body]
            record = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(a), sql.SQL(arg_types[a])) for a in passed)
            named = sql.SQL(", ").join(
                sql.SQL("{} := (SELECT {} FROM pgrst_args LIMIT 1)").format(
                    sql.Identifier(a), sql.Identifier(a)) for a in passed)
            function = sql.Identifier(self.schema, name)
            args_cte = (sql.SQL("pgrst_args AS (SELECT * FROM json_to_recordset("
                                "json_build_array(%s::json)) AS _({})),").format(record)
                        if passed else sql.SQL(""))
            if retset:
                query = sql.SQL(
                    "WITH {args} pgrst_source AS (SELECT pgrst_call.* FROM {fn}({named})"
                    " AS pgrst_call) SELECT coalesce(json_agg(_postgrest_t), '[]')::text"
                    " FROM (SELECT * FROM pgrst_source) AS _postgrest_t")
            else:
                query = sql.SQL(
                    "WITH {args} pgrst_source AS (SELECT {fn}({named}) AS pgrst_scalar)"
                    " SELECT to_json(pgrst_source.pgrst_scalar)::text FROM pgrst_source")
            query = query.format(args=args_cte, fn=function, named=named)
            try:
                with self.conn.transaction():
                    if method == "GET":
                        self.conn.execute("SET TRANSACTION READ ONLY")
                    self.conn.execute(
                        "SELECT set_config('search_path', %s, true), set_config('role', %s, true),"
                        " set_config('request.jwt.claims', %s, true),"
                        " set_config('request.method', %s, true),"
                        " set_config('request.path', %s, true),"
                        " set_config('request.headers', %s, true),"
                        " set_config('request.cookies', '{}', true)",
                        (f'"{self.schema}", "public"', role, json.dumps(claims), method, path,
                         json.dumps(headers)))
                    (result,) = self.conn.execute(
                        query, (json.dumps(body),) if passed else ()).fetchone()
            except psycopg.DatabaseError as exc:
                diag = exc.diag
                return http_status(diag.sqlstate or "", anonymous), {
                    "code": diag.sqlstate, "message": diag.message_primary,
                    "details": diag.message_detail, "hint": diag.message_hint}
        return 200, json.loads(result)


class _Handler(BaseHTTPRequestHandler):
    api: PostgrestStandIn

    def log_message(self, *args) -> None:
        pass

    def _respond(self, method: str, body: dict) -> None:
        path = urlsplit(self.path).path
        headers = {k.lower(): v for k, v in self.headers.items()}
        if not path.startswith("/rpc/"):
            status, payload = 404, {"code": "PGRST125", "message": "only /rpc/ is served"}
        else:
            status, payload = self.api.call(method, path, headers, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._respond("POST", json.loads(self.rfile.read(length) or b"{}"))

    def do_GET(self):  # noqa: N802
        self._respond("GET", dict(parse_qsl(urlsplit(self.path).query)))
