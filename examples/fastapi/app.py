"""A FastAPI backend that keeps its HTTP API and hands the WebSockets to
Switchboard (docs/from-fastapi.md).

It does two things:

- ``GET /token?user=alice`` mints a short-lived JWT for the browser, signed
  with the hub's ``--jwt-secret`` (PROTOCOL.md §7: ``sub``, ``exp``,
  ``rooms``, ``publish``, ``info``). The browser connects to the hub with it:
  ``ws://HUB/ws?token=...``.
- ``POST /say`` ``{"room": "chat:lobby", "text": "hi"}`` publishes to a room
  through the hub's server API (PROTOCOL.md §11, ``POST /api/publish`` with
  ``Authorization: Bearer KEY``); every subscriber gets a ``message`` with
  ``from: null``.

Settings come from the environment:

- ``SWITCHBOARD_HTTP`` the hub's HTTP base, e.g. ``http://127.0.0.1:8080``
- ``SWITCHBOARD_JWT_SECRET`` the hub's ``--jwt-secret``
- ``SWITCHBOARD_API_KEY`` one of the hub's ``--api-key`` values
- ``TOKEN_TTL_SECS`` how long a minted token lives (default 300)

Run: ``uvicorn app:app --port 8000`` (see README.md beside this file).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import httpx
import jwt
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

HUB = os.environ.get("SWITCHBOARD_HTTP", "http://127.0.0.1:8080").rstrip("/")
JWT_SECRET = os.environ["SWITCHBOARD_JWT_SECRET"]
API_KEY = os.environ["SWITCHBOARD_API_KEY"]
TOKEN_TTL_SECS = int(os.environ.get("TOKEN_TTL_SECS", "300"))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    # One pooled client for the app's life: publishes reuse its connections.
    async with httpx.AsyncClient(
        base_url=HUB,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5.0,
    ) as client:
        app.state.hub = client
        yield


app = FastAPI(title="Switchboard FastAPI example", lifespan=lifespan)


def mint_token(user: str) -> str:
    """A JWT the hub accepts (HS256 with the hub's secret)."""
    now = int(time.time())
    claims = {
        "sub": user,
        "iat": now,
        "exp": now + TOKEN_TTL_SECS,
        # May subscribe to (and read presence and history of) every chat room.
        "rooms": ["chat:*"],
        # May publish from the browser to chat rooms only.
        "publish": ["chat:*"],
        # Shown to the others in presence.
        "info": {"name": user},
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@app.get("/token")
async def token(user: str = Query(min_length=1, max_length=128)) -> dict[str, Any]:
    # A real app takes the user from its session (its cookie, its OAuth
    # login) instead of a query parameter.
    return {"token": mint_token(user), "expires_in": TOKEN_TTL_SECS}


class Say(BaseModel):
    room: str = Field(min_length=1, max_length=128)
    text: str = Field(max_length=4000)


@app.post("/say")
async def say(body: Say) -> JSONResponse:
    try:
        answer = await app.state.hub.post(
            "/api/publish",
            json={"room": body.room, "data": {"from": "backend", "text": body.text}},
        )
    except httpx.HTTPError as e:
        raise HTTPException(status_code=502, detail=f"hub unreachable: {e}") from e
    # 200 {"room", "epoch", "offset"}; or the hub's {"code", "reason"}
    # (400 4005 bad room, 503 4013 store down, ...), passed on as it is.
    return JSONResponse(status_code=answer.status_code, content=answer.json())


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
