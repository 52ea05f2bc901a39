"""Fine-tune any zoo model with any objective: fine-grained, few-shot and COCO runs start from other weights.

The config names the objective (``objective.name``) and the starting weights (``model.init``: a zoo tag such as
``resnet50_ce.in1k`` or a folder written by a recipe); ``model.reset_head`` gives the new dataset a fresh classifier.
Few-shot: ``--set data.few_shot=5 --set data.episode=3`` (the CGC paper's 20 seeded episodes).
Your own images (one folder per class, ``data.dataset: imagefolder``): README, "Fine-tune a zoo model on your own
images".
"""

from consistentzoo.training.recipe import recipe_main

if __name__ == "__main__":
    # The objective comes from the config: one script for every fine-tuning row of every paper.
    metrics = recipe_main(None, description=__doc__)
    print({"steps": metrics["steps"], **metrics["eval"]})
