"""Write tests/data/backbone_golden.npz: camera frames and the reference implementation's
features for them (torchvision's MobileNetV2 with its ImageNet checkpoint), plus two tiny
PyTorch checkpoints (zip and legacy format) for the restricted reader's tests.

Run once, in a scratch environment that has torch and torchvision (never a serl dependency):

    .venv/bin/python tests/data/make_backbone_golden.py frames /tmp/frames.npz   # serl's venv
    SCRATCH/bin/python tests/data/make_backbone_golden.py golden /tmp/frames.npz CHECKPOINT
"""

import sys

import numpy as np

OUT = "tests/data/backbone_golden.npz"


def frames(out: str) -> None:
    """Front and wrist frames of the vision task at two seeds (serl's environment)."""
    import gymnasium as gym

    import serl  # noqa: F401

    env = gym.make("serl/PandaPickCubeVision-v0")
    images = []
    for seed in (0, 1):
        obs, _ = env.reset(seed=seed)
        images += [obs["front"], obs["wrist"]]
    np.savez(out, images=np.stack(images))


def golden(frames_path: str, checkpoint: str) -> None:
    """torchvision's features at output strides 16 and 32 (the scratch environment)."""
    import torch
    import torchvision

    images = np.load(frames_path)["images"]
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    net.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
    with torch.no_grad():
        s16 = net.features[:14](x).permute(0, 2, 3, 1).numpy()
        s32 = net.features[:18](x).permute(0, 2, 3, 1).numpy()
    tiny = {
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
        "b": torch.arange(12, dtype=torch.int64).reshape(3, 4).t(),  # non-contiguous
        "c": torch.ones(4, dtype=torch.float16) * 0.5,
    }
    torch.save(tiny, "tests/data/tiny_zip.pt")
    torch.save(tiny, "tests/data/tiny_legacy.pt", _use_new_zipfile_serialization=False)
    np.savez_compressed(
        OUT,
        images=images,
        mobilenet_v2_stride16=s16,
        mobilenet_v2_stride32=s32,
        tiny_a=tiny["a"].numpy(),
        tiny_b=tiny["b"].numpy(),
        tiny_c=tiny["c"].numpy(),
        versions=np.array([torch.__version__, torchvision.__version__]),
    )
    print(f"wrote {OUT}: {images.shape} images, features {s16.shape} {s32.shape}")


if __name__ == "__main__":
    {"frames": frames, "golden": golden}[sys.argv[1]](*sys.argv[2:])
