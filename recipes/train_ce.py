"""Cross-entropy baseline (the CE rows of the GC, CGC, SSIM and guided-gradient papers).

Hyper-parameters come from the YAML (`recipes/configs/<tag>.yaml`, overridable with `--set key=value`); hardware
comes from flags and the launcher. Runs on one CPU (`python recipes/train_ce.py ...`), several CPU processes
(`torchrun --nproc_per_node 2 recipes/train_ce.py ...`) and one or many GPUs
(`accelerate launch recipes/train_ce.py --config recipes/configs/<tag>.yaml`).
"""

from consistentzoo.training.recipe import recipe_main

if __name__ == "__main__":
    # The objective is fixed by the recipe; everything else is in the config and the shared loop.
    metrics = recipe_main("ce", description=__doc__)
    print({"steps": metrics["steps"], **metrics["eval"]})
