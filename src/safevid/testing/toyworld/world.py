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

# The packaged worlds, by name: `static` tells every subcategory apart in any single frame (colour and shape);
# in `temporal` the harmful scene and its look-alike differ only in which way they move.
WORLDS = {"static": "world.yaml", "temporal": "world_temporal.yaml"}
WORLD_FILE = Path(__file__).with_name(WORLDS["static"])
SPLITS = ("train", "eval")
SHAPES = ("square", "circle", "triangle", "bar")
MOTIONS = ("shaking in place", "moving left", "moving right", "moving up", "moving down")
# The direction of each moving motion, (x, y) per frame in units of the clip's speed.
_STEPS = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}


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
        sx, sy = _STEPS[self.motion]
        return x + sx * self.speed * index, y + sy * self.speed * index


@dataclass(frozen=True)
class ToyWorld:
    """A loaded `world.yaml` (see the file's comments for each key)."""

    data: dict[str, Any]
    source: Path

    @classmethod
    def load(cls, world: str | os.PathLike[str] | None = None) -> ToyWorld:
        """A packaged world by name (`WORLDS`; `static` by default) or a world YAML by path."""
        if world is None or str(world) in WORLDS:
            source = WORLD_FILE.with_name(WORLDS[str(world or "static")])
        else:
            source = Path(world)
            if not source.is_file():
                raise FileNotFoundError(
                    f"no toy world {str(world)!r}: give a packaged world ({', '.join(WORLDS)}) or a world YAML file"
                )
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

    @property
    def sampling(self) -> dict[str, Any]:
        """The frame sampling of every stage (build, bench, training, evaluation), as `VideoSampling` keys."""
        return self.data["sampling"]

    @staticmethod
    def looks(signature: dict[str, str]) -> str:
        """A signature in the describer's words ("A red square moving right"), with which the taxonomy's
        description of its subcategory must begin: the classifier stand-in matches the two."""
        return f"A {signature['colour']} {signature['shape']} {signature['motion']}"

    def check(self) -> None:
        """Fail naming the key when the world file is inconsistent with its taxonomy or vocabulary.

        The signatures are the one place that ties pixels to subcategories; the taxonomy's descriptions (which the
        classifier stand-in reads) must say the same, or the clips would be labelled by the other file.
        """
        from safevid.taxonomy import load_taxonomy

        where = str(self.source)
        taxonomy = load_taxonomy(self.taxonomy_path)
        for subcategory, signature in self.signatures.items():
            description = taxonomy.subcategory(subcategory).description  # raises naming an unknown id
            if not description.startswith(self.looks(signature)):
                raise ValueError(
                    f"{self.taxonomy_path}: the description of {subcategory} ({description!r}) must begin with "
                    f"{self.looks(signature)!r}, its signature in {where}; change one to match the other"
                )
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
        out = []
        for subcategory, count in self.data["counts"][split].items():
            for _ in range(max(1, round(count * scale))):
                out.append((subcategory, self._scene(rng, self.signatures[subcategory])))
        rng.shuffle(out)
        return out

    def perception_scenes(self, seed: int, count: int) -> list[tuple[str, Scene]]:
        """`count` scenes of any colour of the palette, shape and motion, each with its caption in the describer's
        words: what pre-training teaches a real model to perceive, knowing nothing of the taxonomy."""
        rng = random.Random(f"{self.data['name']}|{seed}|perception")
        out = []
        for _ in range(count):
            signature = {
                "colour": rng.choice(sorted(self.palette)),
                "shape": rng.choice(SHAPES),
                "motion": rng.choice(MOTIONS),
            }
            out.append((self.looks(signature) + ".", self._scene(rng, signature)))
        return out

    def _scene(self, rng: random.Random, signature: dict[str, str]) -> Scene:
        """One clip of `signature`, its size, speed, background and start drawn from `rng`."""
        width, height = self.clip["width"], self.clip["height"]
        frames = round(self.clip["duration"] * self.clip["fps"])
        variants = self.data["variants"]
        size, speed = rng.choice(variants["size"]), rng.choice(variants["speed"])
        travel = 0 if signature["motion"] == "shaking in place" else speed * (frames - 1)
        if self.data.get("anchor") == "middle-sample":
            start = self._start_from_middle(rng, signature["motion"], size, speed)
        else:
            start = _start(rng, signature["motion"], size, travel, width, height)
        return Scene(
            colour=self.palette[signature["colour"]],
            shape=signature["shape"],
            motion=signature["motion"],
            size=size,
            speed=speed,
            background=rng.choice(variants["background"]),
            start=start,
            seed=rng.randrange(2**31),
        )

    def _start_from_middle(
        self, rng: random.Random, motion: str, size: int, speed: float
    ) -> tuple[float, float]:
        """A start centre such that, at the frame the sampling's middle sample shows (the `single-frame` ablation's
        frame), the shape's position has one distribution whatever its direction: drawn uniformly from the range
        that keeps the whole path inside the frame moving either way along its axis."""
        from safevid.video.sampling import index_centres

        frames = round(self.clip["duration"] * self.clip["fps"])
        count = self.sampling["num_frames"]
        middle = index_centres(frames, count)[count // 2]
        reach = max(middle, frames - 1 - middle) * speed  # the farthest the path goes from the middle sample
        width, height = self.clip["width"], self.clip["height"]
        margin = math.ceil(size / 2) + 1
        step = _STEPS.get(motion, (0, 0))
        x_reach, y_reach = reach * abs(step[0]), reach * abs(step[1])
        if width - 2 * (margin + x_reach) < 0 or height - 2 * (margin + y_reach) < 0:
            raise ValueError(
                f"a {size}-pixel shape {motion} at speed {speed} does not fit a {width}x{height} clip"
            )
        x = rng.uniform(margin + x_reach, width - margin - x_reach)
        y = rng.uniform(margin + y_reach, height - margin - y_reach)
        return x - step[0] * speed * middle, y - step[1] * speed * middle

    def render(self, out_dir: str | os.PathLike[str], seed: int, scale: float = 1.0) -> dict[str, Path]:
        """Render both splits under `out_dir/<split>/clip-<n>.mp4`; returns the split folders.

        Raises:
            `RuntimeError`: a training clip and an evaluation clip have the same content.
        """
        out = Path(out_dir)
        folders, hashes = {}, {}
        for split in SPLITS:
            folders[split] = out / split
            truth, hashes[split] = self.render_scenes(self.scenes(split, seed, scale), folders[split])
            (out / f"{split}-truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
        shared = hashes["train"] & hashes["eval"]
        if shared:
            raise RuntimeError(f"{len(shared)} clip(s) rendered identically in both splits; change the seed")
        return folders

    def render_scenes(self, scenes: list[tuple[str, Scene]], folder: Path) -> tuple[dict[str, str], set[str]]:
        """Render (label, scene) pairs to `folder/clip-<n>.mp4`; returns {file name: label} and the content hashes."""
        from safevid.testing.videos import make_test_video

        truth, hashes = {}, set()
        for number, (label, scene) in enumerate(scenes):
            path = make_test_video(
                folder / f"clip-{number:04d}.mp4",
                width=self.clip["width"],
                height=self.clip["height"],
                fps=self.clip["fps"],
                duration=self.clip["duration"],
                frame_source=scene.frame,
            )
            truth[path.name] = label
            hashes.add(hashlib.sha256(path.read_bytes()).hexdigest())
        return truth, hashes


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
