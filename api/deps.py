"""The dependencies routes declare: settings, engine, store, session and the requester.

Routes take them as `Annotated` aliases (`SettingsDep`, `EngineDep`, `StoreDep`, `SessionDep`,
`ClientDep`), so a signature says what a route uses and tests can build an app on any engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dnsbl.config import Settings
from dnsbl.listings.store import ListingStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_store(request: Request) -> ListingStore:
    store: ListingStore = request.app.state.store
    return store


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def client_address(request: Request) -> str:
    """The address the request came from: who a public request is from, for rate limits."""
    return request.client.host if request.client else "unknown"


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[ListingStore, Depends(get_store)]
SessionDep = Annotated[Session, Depends(get_session)]
ClientDep = Annotated[str, Depends(client_address)]
