"""README's settings table names every setting (an outside tester found five missing)."""

from __future__ import annotations

from pydantic import BaseModel

from notifier.config import Settings
from tests.conftest import ROOT


def variables(model: type[BaseModel], prefix: str) -> list[str]:
    """`NOTIFIER_...` for every field, nested models joined by `__` as pydantic-settings reads
    them."""
    names = []
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names += variables(kind, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_every_setting_is_in_the_readme_settings_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.partition("## 配置 Settings")[2].partition("\n## ")[0]
    found = variables(Settings, "NOTIFIER_")
    assert "NOTIFIER_DELIVERY__GIVE_UP_AFTER" in found and "NOTIFIER_SMTP__HOST" in found
    missing = [name for name in found if name not in table]
    assert missing == [], f"not in README's settings table: {missing}"
