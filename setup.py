"""Build rskp: the Python packages and the csrc/ memory-bank extension (``rs_kernels._C``).

CUDA sources are compiled when CUDA is usable or ``FORCE_CUDA=1``; ``TORCH_CUDA_ARCH_LIST``
picks the architectures (default includes 9.0, the H100/H200) and ``MAX_JOBS`` caps ninja's
parallel jobs, which otherwise run out of memory on small machines.
"""
import glob
import os

from setuptools import find_packages, setup


def extension_modules():
    sources = sorted(glob.glob("csrc/*.cpp"))
    if not sources:
        return [], {}
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu"))
    use_cuda = bool(cuda_sources) and (os.environ.get("FORCE_CUDA") == "1" or torch.cuda.is_available())
    # No -std: torch's build adds the standard its headers need (C++20 from torch 2.13, which 2.14 requires).
    # -ffp-contract=off: no FMA contraction, so the C++ kernels equal the eager reference bit for bit.
    compile_args = {"cxx": ["-O3", "-ffp-contract=off"]}
    if use_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        compile_args["nvcc"] = ["-O3"]
        ext = CUDAExtension("rs_kernels._C", sources + cuda_sources, extra_compile_args=compile_args,
                            define_macros=[("WITH_CUDA", None)])
    else:
        ext = CppExtension("rs_kernels._C", sources, extra_compile_args=compile_args)
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extension_modules()

# python -m rsnet.extract (video files to I3D features): PyAV decodes (its wheels bundle FFmpeg),
# OpenCV's contrib build has TV-L1 (cv2.optflow), torchvision has RAFT; torchvision 0.28 is the
# release built against torch 2.13.
EXTRACT = ["av>=18.1", "opencv-contrib-python-headless>=4.10", "torchvision==0.28.0"]

setup(
    name="rskp",
    version="0.1.0",
    description="RSKP (CVPR 2022) weakly supervised temporal action localization: exact, deterministic, fast",
    packages=find_packages(include=["rs_kernels", "rs_kernels.*", "rsnet", "rsnet.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "numpy>=1.24",
        "tqdm>=4.60",
        "pyyaml>=6.0",
        "safetensors>=0.4",
        "scipy>=1.11",  # the sweep's comparison table: Welch's interval (ttest_ind's confidence_interval), rank test
    ],
    extras_require={
        "triton": ["triton>=3.0"],
        "test": ["pytest>=7", "pytest-xdist>=3.2", "pytest-benchmark>=4", "import-linter>=2.1", "triton>=3.0", "matplotlib>=3.6",
                 "tensorboard>=2.10", "submitit>=1.5", *EXTRACT],
        "extract": EXTRACT,
        "plots": ["matplotlib>=3.6"],
        "tensorboard": ["tensorboard>=2.10"],
        "slurm": ["submitit>=1.5"],  # python -m rsnet.ablate --launcher slurm
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
