"""Gymnasium environments over twins and critics, registered on import.

    import gymnasium, envs
    env = gymnasium.make("poreloop/ElectrodeDesign-v0", size=24)

Each env edits a recipe by bounded steps and is paid by the twin's critic chain on a cube of
``size`` voxels (see ``envs.design``). The entry points are strings, so importing ``envs``
loads neither the twins nor the critics.
"""

from __future__ import annotations

import gymnasium

from poreloop.registry import Registry

_ENTRY_POINTS = {
    "poreloop/ElectrodeDesign-v0": "poreloop.envs.design:ElectrodeDesignEnv",
    "poreloop/GDLDesign-v0": "poreloop.envs.design:GDLDesignEnv",
}
for _id, _entry_point in _ENTRY_POINTS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry_point)

ENVS: Registry[type[gymnasium.Env]] = Registry(
    "env", gymnasium.error.UnregisteredEnv, dict(_ENTRY_POINTS)
)

__all__ = ["ENVS"]
