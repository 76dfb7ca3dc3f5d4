"""Gymnasium environments over twins and critics, registered on import.

    import gymnasium, envs
    env = gymnasium.make("poreloop/ElectrodeDesign-v0", size=24)

Each env edits a recipe by bounded steps and is paid by the twin's critic chain on a cube of
``size`` voxels (see ``envs.design``). The entry points are strings, so importing ``envs``
loads neither the twins nor the critics.
"""

from __future__ import annotations

import gymnasium

ENVS: dict[str, str] = {
    "poreloop/ElectrodeDesign-v0": "poreloop.envs.design:ElectrodeDesignEnv",
    "poreloop/GDLDesign-v0": "poreloop.envs.design:GDLDesignEnv",
}

for _id, _entry_point in ENVS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(id=_id, entry_point=_entry_point)

__all__ = ["ENVS"]
