"""``python -m bridge train``: Gaussian splats from a COLMAP model, as in 3DGS and gsplat's example trainer.

job.py (what to do) -> data.py (cameras and images) -> trainer.py (the loop, with gaussians.py,
losses.py, checkpoint.py and mcmc.py) -> cli.py (the command line around it).
"""
