"""The toy world: a YAML file (`world.yaml`) that says what each toy subcategory looks like, and its clips.

Every clip is one coloured shape moving on a plain grey background, rendered with the test-video generator
(`safevid.testing.videos.make_test_video`). A subcategory's signature (colour, shape, motion) comes from the
world file; size, speed, background and start position vary per clip, drawn from a seeded random stream per
split, so training and evaluation clips differ in their pixels and are checked disjoint by content hash.

Clip files are named `clip-<n>.mp4` in a shuffled order: nothing in a path tells what a clip shows. Which
subcategory each clip shows is written apart, to `<out>/<split>-truth.json`, for checks only; no stand-in and
no stage of the pipeline reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

WORLD_FILE = Path(__file__).with_name("world.yaml")
SPLITS = ("train", "eval")
SHAPES = ("square", "circle", "triangle", "bar")
MOTIONS = ("shaking in place", "moving left", "moving right", "moving up", "moving down")


@dataclass(frozen=True)
class Scene:
    """One clip's content: a shape of a colour moving (or shaking) on a grey background."""

    colour: tuple[int, int, int]
    shape: str
    motion: str
    size: int
    speed: float
    background: int
    start: tuple[float, float]  # centre (x, y) at frame 0
    seed: int

    def frame(self, index: int, width: int, height: int) -> np.ndarray:
        """Frame `index` as (height, width, 3) uint8 RGB."""
        image = np.full((height, width, 3), self.background, dtype=np.uint8)
        x, y = self.centre(index)
        ys, xs = np.mgrid[0:height, 0:width]
        half = self.size / 2
        dx, dy = xs - x, ys - y
        if self.shape == "square":
            mask = (abs(dx) <= half) & (abs(dy) <= half)
        elif self.shape == "circle":
            mask = dx**2 + dy**2 <= half**2
        elif self.shape == "bar":  # twice as wide as high
            mask = (abs(dx) <= half) & (abs(dy) <= half / 2)
        else:  # triangle, apex up: its half-width grows from 0 at the top to `half` at the bottom
            mask = (abs(dy) <= half) & (abs(dx) <= (dy + half) / 2)
        image[mask] = self.colour
        return image

    def centre(self, index: int) -> tuple[float, float]:
        x, y = self.start
        if self.motion == "shaking in place":
            jitter = random.Random(self.seed * 7919 + index)
            return x + jitter.uniform(-1, 1) * self.speed, y + jitter.uniform(-1, 1) * self.speed
        step = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}
        sx, sy = step[self.motion]
        return x + sx * self.speed * index, y + sy * self.speed * index


@dataclass(frozen=True)
class ToyWorld:
    """A loaded `world.yaml` (see the file's comments for each key)."""

    data: dict[str, Any]
    source: Path

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> ToyWorld:
        source = Path(path) if path is not None else WORLD_FILE
        data = yaml.safe_load(source.read_text())
        world = cls(data, source)
        world.check()
        return world

    @property
    def taxonomy_path(self) -> Path:
        return self.source.parent / self.data["taxonomy"]

    @property
    def palette(self) -> dict[str, tuple[int, int, int]]:
        return {name: tuple(rgb) for name, rgb in self.data["palette"].items()}

    @property
    def signatures(self) -> dict[str, dict[str, str]]:
        return self.data["signatures"]

    @property
    def clip(self) -> dict[str, Any]:
        return self.data["clip"]

    def check(self) -> None:
        """Fail naming the key when the world file is inconsistent with its taxonomy or vocabulary."""
        from safevid.taxonomy import load_taxonomy

        where = str(self.source)
        taxonomy = load_taxonomy(self.taxonomy_path)
        for subcategory, signature in self.signatures.items():
            taxonomy.subcategory(subcategory)  # raises naming the unknown id
            if signature["colour"] not in self.palette:
                raise ValueError(f"{where}: signatures.{subcategory}.colour is not in the palette")
            if signature["shape"] not in SHAPES or signature["motion"] not in MOTIONS:
                raise ValueError(f"{where}: signatures.{subcategory}: shape in {SHAPES}, motion in {MOTIONS}")
        looks = [tuple(sorted(s.items())) for s in self.signatures.values()]
        if len(set(looks)) != len(looks):
            raise ValueError(
                f"{where}: two subcategories share a signature; the pixels could not tell them apart"
            )
        for split in SPLITS:
            unknown = set(self.data["counts"][split]) - set(self.signatures)
            if unknown:
                raise ValueError(
                    f"{where}: counts.{split} names subcategories without a signature: {unknown}"
                )

    def scenes(self, split: str, seed: int, scale: float = 1.0) -> list[tuple[str, Scene]]:
        """The (subcategory, scene) of every clip of `split`, in a shuffled order; `scale` shrinks the counts."""
        rng = random.Random(f"{self.data['name']}|{seed}|{split}")
        width, height = self.clip["width"], self.clip["height"]
        frames = round(self.clip["duration"] * self.clip["fps"])
        variants = self.data["variants"]
        out = []
        for subcategory, count in self.data["counts"][split].items():
            signature = self.signatures[subcategory]
            for _ in range(max(1, round(count * scale))):
                size, speed = rng.choice(variants["size"]), rng.choice(variants["speed"])
                travel = 0 if signature["motion"] == "shaking in place" else speed * (frames - 1)
                start = _start(rng, signature["motion"], size, travel, width, height)
                scene = Scene(
                    colour=self.palette[signature["colour"]],
                    shape=signature["shape"],
                    motion=signature["motion"],
                    size=size,
                    speed=speed,
                    background=rng.choice(variants["background"]),
                    start=start,
                    seed=rng.randrange(2**31),
                )
                out.append((subcategory, scene))
        rng.shuffle(out)
        return out

    def render(self, out_dir: str | os.PathLike[str], seed: int, scale: float = 1.0) -> dict[str, Path]:
        """Render both splits under `out_dir/<split>/clip-<n>.mp4`; returns the split folders.

        Raises:
            `RuntimeError`: a training clip and an evaluation clip have the same content.
        """
        from safevid.testing.videos import make_test_video

        out = Path(out_dir)
        folders, hashes = {}, {}
        for split in SPLITS:
            folder = out / split
            truth = {}
            for number, (subcategory, scene) in enumerate(self.scenes(split, seed, scale)):
                path = make_test_video(
                    folder / f"clip-{number:04d}.mp4",
                    width=self.clip["width"],
                    height=self.clip["height"],
                    fps=self.clip["fps"],
                    duration=self.clip["duration"],
                    frame_source=scene.frame,
                )
                truth[path.name] = subcategory
                hashes.setdefault(split, set()).add(hashlib.sha256(path.read_bytes()).hexdigest())
            (out / f"{split}-truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
            folders[split] = folder
        shared = hashes["train"] & hashes["eval"]
        if shared:
            raise RuntimeError(f"{len(shared)} clip(s) rendered identically in both splits; change the seed")
        return folders


def _start(
    rng: random.Random, motion: str, size: int, travel: float, width: int, height: int
) -> tuple[float, float]:
    """A start centre that keeps the whole shape (and its path) inside the frame."""
    margin = math.ceil(size / 2) + 1
    lo_x, hi_x, lo_y, hi_y = margin, width - margin, margin, height - margin
    if motion == "moving right":
        hi_x -= travel
    elif motion == "moving left":
        lo_x += travel
    elif motion == "moving down":
        hi_y -= travel
    elif motion == "moving up":
        lo_y += travel
    if hi_x < lo_x or hi_y < lo_y:
        raise ValueError(
            f"a {size}-pixel shape {motion} {travel:.0f} pixels does not fit a {width}x{height} clip"
        )
    return rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
