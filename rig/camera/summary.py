"""What a camera says about itself: identity, battery and memory cards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StorageSummary:
    """One storage (card or internal memory); ``None`` where the camera does not say."""

    description: str
    label: str = ""
    capacity_bytes: int | None = None
    free_bytes: int | None = None
    free_images: int | None = None

    def describe(self) -> str:
        name = self.description or self.label or "storage"
        parts = []
        if self.free_bytes is not None and self.capacity_bytes:
            parts.append(f"{_size(self.free_bytes)} free of {_size(self.capacity_bytes)}")
        elif self.free_bytes is not None:
            parts.append(f"{_size(self.free_bytes)} free")
        if self.free_images is not None:
            parts.append(f"about {self.free_images} shots")
        return f"{name}: {', '.join(parts)}" if parts else name


@dataclass(frozen=True)
class CameraSummary:
    """Identity and state of an open camera."""

    manufacturer: str
    model: str
    serial: str
    battery: str
    port: str
    storage: tuple[StorageSummary, ...] = ()

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for display."""
        rows = [
            ("Manufacturer", self.manufacturer or "unknown"),
            ("Model", self.model),
            ("Serial", self.serial or "unknown"),
            ("Battery", self.battery or "unknown"),
            ("Port", self.port),
        ]
        if not self.storage:
            rows.append(("Storage", "none reported"))
        rows += [("Storage", s.describe()) for s in self.storage]
        return rows


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
