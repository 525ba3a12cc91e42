"""Write docs/icon.png, the pack's icon for the Comfy Registry ([tool.comfy] Icon in pyproject.toml).

The picture is the real radial block mask (radial_core) of Wan 2.1 at 480x832, 81 frames: kept
blocks coloured by the temporal distance of their frame pair, skipped blocks dark.

    .venv/bin/python scripts/make_icon.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZE = 400
# distance band (bit length of the frame distance) -> colour, warm near the diagonal
BANDS = [(255, 200, 60), (255, 140, 50), (230, 80, 90), (190, 70, 170), (120, 90, 220), (70, 140, 230),
         (60, 190, 190), (90, 200, 110)]


def main() -> None:
    import torch
    from PIL import Image

    from radial_core import radial_block_mask

    frames, tokens, block = 21, 1560, 128  # Wan 2.1, 480x832, 81 frames
    mask = radial_block_mask(frames, tokens, decay_factor=0.2, block_size=block)
    nb = mask.shape[0]
    frame_of = torch.clamp(torch.arange(nb) * block // tokens, max=frames - 1)
    dist = (frame_of[:, None] - frame_of[None, :]).abs()
    band = torch.zeros_like(dist)
    nz = dist > 0
    band[nz] = torch.floor(torch.log2(dist[nz].float())).long() + 1
    img = torch.full((nb, nb, 3), 18, dtype=torch.uint8)
    colours = torch.tensor(BANDS, dtype=torch.uint8)
    kept = mask.bool()
    img[kept] = colours[band.clamp(max=len(BANDS) - 1)][kept]
    picture = Image.fromarray(img.numpy()).resize((SIZE, SIZE), Image.NEAREST)
    out = ROOT / "docs" / "icon.png"
    picture.save(out, optimize=True)
    print(f"wrote {out.relative_to(ROOT)} ({nb}x{nb} blocks, density {kept.float().mean():.3f})")


if __name__ == "__main__":
    main()
