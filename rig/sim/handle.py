"""A libgphoto2 camera handle layered over another, for the simulated bodies.

The vendor quirk layer (:mod:`rig.sim.camera_quirks`) and the bracketing bodies
(:mod:`rig.sim.bracketing`) stand between :class:`rig.camera.Camera` and the real libgphoto2
handle of the virtual camera (python-gphoto2's ``Camera``). Each answers for the files it holds
and passes every other call to the handle below, so the real parts stay real. :class:`HandleLayer`
is that pass-through, and the two file calls both layers answer alike: ``file_get_info`` reports
a held file's size, ``file_get`` returns its bytes once the layer has charged the transfer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class HandleLayer(ABC):
    """python-gphoto2's ``Camera`` methods; whatever a subclass does not define goes below."""

    def __init__(self, real: Any) -> None:
        from rig.camera.backend import load_gphoto2

        self._real = real
        """The handle below: libgphoto2's, or another layer."""
        self._gp = load_gphoto2()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _error(self, code: int) -> Exception:
        """The exception python-gphoto2 raises for the libgphoto2 result ``code``."""
        error: Exception = self._gp.GPhoto2Error(code)
        return error

    @abstractmethod
    def _held(self, folder: str, name: str) -> bytes | None:
        """The bytes of a file this layer holds, ``None`` for one it leaves to the handle below.

        Raises as the body does when it cannot answer now (busy writing a frame).
        """

    @abstractmethod
    def _download(self, folder: str, name: str) -> bytes | None:
        """Like :meth:`_held`, after the time the download takes on the link."""

    def file_get_info(self, folder: str, name: str) -> Any:
        data = self._held(folder, name)
        if data is None:
            return self._real.file_get_info(folder, name)
        info = self._gp.CameraFileInfo()
        info.file.fields = self._gp.GP_FILE_INFO_SIZE
        info.file.size = len(data)
        return info

    def file_get(self, folder: str, name: str, kind: int) -> Any:
        data = self._download(folder, name)
        if data is None:
            return self._real.file_get(folder, name, kind)
        cf = self._gp.CameraFile()
        cf.set_data_and_size(data)
        return cf
