"""`python -m safevid.testing.toyworld {render,base,serve}`: the toy world's steps (see the package docstring)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m safevid.testing.toyworld", description=__doc__)
    parser.add_argument(
        "--world",
        default=None,
        help="A packaged world (static, temporal) or a world YAML; static by default.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser("render", help="Render the training and evaluation clips.")
    render.add_argument("--out", required=True, help="Folder; clips go to <out>/train and <out>/eval.")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument(
        "--scale", type=float, default=1.0, help="Multiply every clip count (smaller worlds)."
    )
    base = commands.add_parser("base", help="Fine-tune the tiny target into the unsafe base.")
    base.add_argument("--clips", required=True, help="The training clips folder.")
    base.add_argument("--out", required=True, help="Checkpoint folder to write.")
    base.add_argument("--seed", type=int, default=0)
    serve = commands.add_parser("serve", help="Serve the stand-ins over the OpenAI-compatible protocol.")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed).")
    args = parser.parse_args(argv)

    from safevid.testing.toyworld.world import ToyWorld

    world = ToyWorld.load(args.world)
    if args.command == "render":
        folders = world.render(args.out, args.seed, args.scale)
        print(" ".join(f"{split}: {folder}" for split, folder in folders.items()))
    elif args.command == "base":
        from safevid.testing.toyworld.base import make_unsafe_base

        print(f"unsafe base: {make_unsafe_base(world, args.clips, args.out, seed=args.seed)}")
    else:
        from safevid.backends.server import LoopbackServer
        from safevid.testing.toyworld.standins import ToyWorldBackend

        server = LoopbackServer(
            backend=ToyWorldBackend(world), model_name="toyworld", host=args.host, port=args.port
        )
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
