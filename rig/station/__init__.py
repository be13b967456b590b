"""The rig station: the rig run headless and controlled from a browser.

:mod:`rig.station.service` holds the :class:`~rig.station.service.Station` (devices, sessions,
files), :mod:`rig.station.api` its HTTP routes and token gate, ``static/`` its page script.
"""
