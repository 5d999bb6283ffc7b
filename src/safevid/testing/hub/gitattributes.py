"""Which files go through LFS: the default `.gitattributes` of a new repo and the Hub's upload-mode rules."""

from __future__ import annotations

import fnmatch

# Files at least this large go through LFS whatever their name, as on the Hub.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024

# The `.gitattributes` a new repo starts with. Like the Hub's default, it routes binary formats to LFS;
# preupload then answers "lfs" for any path these patterns (or the repo's own edited file) match.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.avi", "*.bin", "*.bz2", "*.ckpt", "*.flac", "*.gz", "*.h5", "*.jpeg", "*.jpg",
        "*.joblib", "*.mkv", "*.model", "*.mov", "*.mp3", "*.mp4", "*.msgpack", "*.npy", "*.npz", "*.onnx",
        "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.png", "*.pt", "*.pth", "*.safetensors", "*.tar",
        "*.tflite", "*.tgz", "*.wasm", "*.wav", "*.webm", "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip


def lfs_patterns(gitattributes: str) -> list[str]:
    """The path patterns a `.gitattributes` file routes to LFS (`filter=lfs`)."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def needs_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """Whether the Hub would have a file uploaded through LFS: large, binary-looking or matched by a pattern."""
    name = path.rsplit("/", 1)[-1]
    # A pattern without a slash matches the file name at any depth, as in .gitattributes.
    return (
        size >= LFS_SIZE_THRESHOLD
        or b"\0" in sample
        or any(fnmatch.fnmatchcase(path if "/" in p else name, p.lstrip("/")) for p in patterns)
    )
