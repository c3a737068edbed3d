"""Request and response models of the settings API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = ["MAX_TIMEOUT_MINUTES", "MIN_TIMEOUT_MINUTES", "SettingsIn"]

MIN_TIMEOUT_MINUTES = 1
MAX_TIMEOUT_MINUTES = 43_200  # 30 days


class SettingsIn(BaseModel):
    """``PUT /v1/settings``: the session timeout, a whole number of minutes (1 to 43,200)."""

    model_config = ConfigDict(extra="ignore")

    sessionTimeoutMinutes: StrictInt = Field(ge=MIN_TIMEOUT_MINUTES, le=MAX_TIMEOUT_MINUTES)
