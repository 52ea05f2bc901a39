"""CGC: contrastive Grad-CAM consistency (Pillai, Abbasi Koohpayegani & Pirsiavash, CVPR 2022).

Hyper-parameters come from the YAML (`recipes/configs/<tag>.yaml`, overridable with `--set key=value`); hardware
comes from flags and the launcher. Runs on one CPU (`python recipes/train_cgc.py ...`), several CPU processes
(`torchrun --nproc_per_node 2 recipes/train_cgc.py ...`) and one or many GPUs
(`accelerate launch recipes/train_cgc.py --config recipes/configs/<tag>.yaml`).
"""

from consistentzoo.training.recipe import recipe_main

if __name__ == "__main__":
    # The objective is fixed by the recipe; everything else is in the config and the shared loop.
    metrics = recipe_main("cgc", description=__doc__)
    print({"steps": metrics["steps"], **metrics["eval"]})
