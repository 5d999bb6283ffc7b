"""The toy video world: a laptop-sized SafeVid loop whose numbers mean something.

Synthetic clips in which only the pixels tell a harmful scene from a harmless look-alike (a world file with its
own taxonomy: `world.yaml`, the static world, where colour and shape tell them apart, and `world_temporal.yaml`,
where only the direction of motion does; `ToyWorld.load` takes a name or a path), toy-world stand-ins for the
72B models of a real build, served over the OpenAI-compatible protocol (`standins`), and an unsafe base made by
a short supervised fine-tune of a tiny checkpoint of a real architecture (`base`). `scripts/demo.py` runs the real loop on it with the commands a user
types. The command line:

    python -m safevid.testing.toyworld [--world temporal] render --out clips --seed 0
    python -m safevid.testing.toyworld base --clips clips/train --out base-model --seed 0
    python -m safevid.testing.toyworld serve --port 0
"""

from safevid.testing.toyworld.world import ToyWorld

__all__ = ["ToyWorld"]
