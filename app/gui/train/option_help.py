"""One line of help for every model and method option of the Train panel: what it does, and the
paper's value where the paper gives one ("ours" where the value was chosen or measured here;
the method modules' docstrings, engine/models/*.py and training/methods/*.py, say why).

``option_help(method, name)`` looks up the method's own line first, then the one shared by
every method; a test checks that each option of each registered method has one.
"""

from __future__ import annotations

SHARED = {
    "codes": "How a code is made: 'sign' of each output, or 'fitted' (centred, then PCA + ITQ "
    "fitted on training data). Not in the papers; default sign.",
    "code_fit": "Fitted codes only: fit PCA + ITQ on the training photos' outputs ('photos') or "
    "on both domains' ('both'). Ours: photos.",
    "backbone_lr_scale": "The pretrained trunk learns at this fraction of the learning rate "
    "(the papers train their own networks; ours).",
    "augment": "Random crops, flips and stroke jitter of the training images. Ours: on.",
    "w_quant": "Weight of the quantisation loss, which pushes outputs towards +-1 so that their "
    "signs lose little. Ours: 0.1.",
    "w_balance": "Weight of the bit-balance loss: each bit is 1 for about half of the images. "
    "Ours: 0.01.",
    "margin_per_bit": "Triplet margin per code bit on the relaxed codes (fine-grained data): 0.5 "
    "asks 8 flipped bits of 64 between a match and a non-match. Ours: 0.5.",
    "dropout": "Dropout rate after the fully connected layers (the papers': 0.5).",
}

METHOD = {
    "baseline": {
        "hidden": "Width of the hash head's hidden layer between the trunk's 1280 features and "
        "the code (not a paper method; ours: 512).",
        "w_class": "Weight of one class classifier shared by sketches and photos, which aligns "
        "the two class by class. Ours: 1.",
        "w_pair": "Weight of the cross-domain pairwise likelihood (DPSH): a sketch and a photo "
        "of one class should be near. Ours: 1.",
    },
    "dssa": {
        "attention": "Soft spatial attention on the conv maps (the paper's model: on; Table 2).",
        "shortcut": "Attention with a shortcut, f + a*f rather than a*f (paper: on; Table 5).",
        "fusion": "Coarse-fine fusion: the pooled attended map joined to FC7 (paper: on; Table 3).",
        "hog_weight": "Re-rank by HOLEF plus this weight x the drawings' HOG distance, fitted "
        "with the codes (codes 'fitted'; or later: fit-codes --hog-weight). Paper: 0; ours: 1.",
        "hog_dim": "PCA dimensions of the HOG term stored per photo (ours: 256).",
        "hog_block": "Cells a side of the HOG term's normalisation blocks (ours: 3, chosen on the "
        "training splits; the HOG baseline's: 2).",
        "edge_threshold": "Gradient threshold of the engine's photo edge maps: lower keeps "
        "fainter lines (the other methods': 0.4; ours: 0.2, chosen on the training splits).",
        "holef": "HOLEF distance with a learnt weight matrix W; off: squared Euclidean "
        "(paper: on; Table 4).",
        "dropout": "Dropout after FC6, as in Sketch-a-Net (paper: 0.5).",
        "canonical_edges": "Normalise photo edge maps as sketches are (cropped to their lines, "
        "centred). Ours: on.",
        "codes_from": "What the code is made from: 'hash' (the hash layer's outputs) or "
        "'features' (PCA + ITQ of the features; needs codes 'fitted'). Shipped: 'features'.",
        "margin": "Margin of the HOLEF triplet loss on unit-length features (the paper gives "
        "none; ours: 0.2).",
        "holef_lambda": "Weight lambda of HOLEF's regulariser on W - I, L1 + Frobenius "
        "(paper: 5e-4).",
        "w_hash": "Weight of a triplet loss on the relaxed codes, so the Hamming ranking follows "
        "the features (no codes in the paper; ours: 0.5).",
        "edges": "Photo edge maps: 'released' (the data set's, the paper's protocol), 'engine' "
        "(computed as at search time), 'auto' (released where every photo has one) or 'both' "
        "(either kind at each step).",
        "crop": "Random crop of this fraction of the side, resized back (paper: 225/256 = 0.879).",
        "true_match": "Chance that a triplet is the sketch's own photo against another; else a "
        "human-annotated pair (paper: both kinds; ours: 1).",
        "in_batch": "Rank each sketch's photo against every other photo of the batch instead of "
        "one drawn negative (not in the paper; ours: on).",
        "active_only": "Average the in-batch hinges over the violated ones only (ours: on).",
        "cache_trunk": "Run the frozen pretrained trunk once per drawing and train only the "
        "layers above it (a CPU configuration; ours: on).",
        "train_stages": "With cache_trunk: how many of the trunk's last stages (of 7) still "
        "learn; the cache then holds the maps below them (ours: 0).",
        "trunk_from": "Where a new model's trunk starts: 'default' (the default model's sketch "
        "encoder, trained on sketches as the paper's backbone was), an anchor checkpoint's "
        "path, or empty for ImageNet's weights. Ours: empty.",
    },
    "semi3": {
        "shared_from": "Trunk stages below this one are each branch's own; from it on the "
        "branches share weights (ours: 5).",
        "embed_dim": "Width of the joint embedding all three branches share (ours: 256).",
        "coattention": "Co-attention recalibrating photo and edge-map channels with common "
        "weights (paper: on).",
        "edge_branch": "The edge-map branch; off: the two-branch ablation (paper: on).",
        "reduction": "Bottleneck ratio of the co-attention layer (ours: 16, as SE blocks).",
        "binarize": "Embedding to code: 'itq' (a fitted rotation; measured better) or 'learned' "
        "(a trained sign projection). Not in the paper.",
        "coattention_gate": "Co-attention gate: 'sigmoid' (in 0..1, as SE) or 'unit' "
        "(2 x sigmoid, starts at 1). Ours: sigmoid.",
        "w_triplet": "Weight of the cross-domain triplet loss (the paper's term; ours: 1).",
        "margin": "Margin of the triplet loss, squared distance of unit embeddings (ours: 0.3).",
        "alignment": "The alignment loss between a photo's and its edge map's embeddings "
        "(paper: on).",
        "w_align": "Weight of the alignment loss (measured here: 0.1; at 1 it cost accuracy).",
        "contrastive": "The sketch / edge-map contrastive loss (paper: on).",
        "w_contrast": "Weight of the sketch / edge-map contrastive loss (measured here: 0.1).",
        "contrast_margin": "Contrastive margin for a sketch and an edge map of different "
        "classes (ours: 1).",
        "w_class": "Weight of the classification loss on all three branches' embeddings "
        "(the paper's term; ours: 1).",
        "w_hash": "Weight of the pairwise likelihood that trains the hash layer (no codes in "
        "the paper; ours: 1).",
    },
    "dsh": {
        "sketch_tokens": "The photo's sketch-token (edge) stream through C2-Net; off: the "
        "ablation without it (paper: on).",
        "fc1": "Width of the first fully connected layers; 0: the backbone's default (paper: "
        "4096; on EfficientNet ours: 512).",
        "fc2": "Width of the second fully connected layers; 0: the backbone's default (paper: "
        "1024; on EfficientNet ours: 256).",
        "dropout": "Dropout after each fully connected layer (paper: 0.5).",
        "fc_batchnorm": "BatchNorm after each fully connected layer (not in the paper; the CPU "
        "recipe needs it).",
        "w_pair": "Weight of the cross-view pairwise loss (ours: 1; the paper's weights were "
        "not checked).",
        "w_quant": "Weight gamma of the quantisation term ||B - F||^2 (ours: 1).",
        "mu": "mu = gamma / lambda in the discrete B step: how closely codes follow the "
        "network (ours: 1).",
        "reg": "Ridge regulariser of the closed-form D step (ours: 1).",
        "alternations": "Rounds of the D and B steps at each epoch's end (ours: 3).",
        "init_codes": "How the codes start: 'class' (a code per class, from its embedding) or "
        "'network' (the untrained net's signs). Ours: class.",
        "class_embedding": "What the codes factorise through: 'photo_prototypes' (each class's "
        "mean photo feature, standing in for the paper's word vectors, so classes that look "
        "alike get nearby codes) or 'one_hot' (each class its own). Ours: photo_prototypes.",
        "embedding_dim": "Dimensions kept of the photo-prototype class embedding (ours: 32).",
        "cache_trunks": "Keep both pretrained trunks frozen, run them once per image and train "
        "only the fully connected layers (thousands of steps on a CPU). Ours: on.",
        "sketch_trunk_from": "Where a new model's C2-Net (sketches and token maps) starts: "
        "'default' (the default model's sketch encoder), an anchor checkpoint's path, or empty "
        "for ImageNet's weights. Ours: default.",
    },
    "gdh": {
        "gen_channels": "Generator width; its ResBlocks run at 4x this (paper: 32, i.e. 128).",
        "gi_blocks": "ResBlocks of G_I, sketch to photo (paper: 9).",
        "gs_blocks": "ResBlocks of G_S, photo to sketch (paper: 6).",
        "attention": "G_S's attention mask on the photo, a 1x1 conv (paper: on; Table 5).",
        "mask_threshold": "Keep positions whose attention weight is at least this x uniform "
        "(ours: 0.5).",
        "skip": "Generators start as the identity (residual); off: the paper's generators.",
        "w_gan": "Weight of the adversarial losses (paper: 1).",
        "w_cycle": "Weight of the cycle-consistency loss (paper: 10).",
        "w_sem": "Weight of the semantic factorisation loss (paper: 1).",
        "alpha": "Weight alpha of the quantisation loss L_q (paper: 1e-5).",
        "beta": "Weight beta of the unification loss L_c (paper: 1e-5).",
        "lam": "Weight lambda of the triplet loss; blank: the paper's, 0 at category level and "
        "1 for fine-grained data.",
        "mu": "mu coupling the codes to the network's outputs in the B step (ours: 1).",
        "init_codes": "How the codes start: 'features' (the untrained model's outputs, a few D/B "
        "steps) or 'random'. Ours: features.",
        "reg": "Ridge regulariser of the D step (ours: 1).",
        "disc_channels": "Width of the discriminators (paper: 64).",
        "hash_drop_at": "From this fraction of the epochs on, H learns at lr x 0.1 (paper: after "
        "25 of 30, 0.833).",
        "hash_lr_scale": "H's learning rate x this (paper: 1; the CPU recipe: 5).",
        "use_gan": "Adversarial terms and discriminators (paper: on; Table 5 ablation).",
        "use_quantisation": "The quantisation loss L_q (paper: on; Table 5 ablation).",
        "use_unification": "The unification loss L_c (paper: on; Table 5 ablation).",
    },
    "anchor": {
        "photo_size": "Input size of the frozen ImageNet photo encoder (224, as it was trained; "
        "not a paper method).",
        "tau": "Temperature of the InfoNCE losses (ours: 0.07).",
        "w_class": "Weight of InfoNCE against every class's photo prototype (ours: 1).",
        "w_instance": "Weight of InfoNCE against the batch's own photos, for sketches drawn of "
        "a photo (ours: 0.5).",
        "w_imagenet": "Weight of the frozen ImageNet classifier's loss, for sketches of ImageNet "
        "classes (ours: 1).",
        "balance": "Draw sketches from each source equally ('source') or from each class "
        "equally ('class'). Ours: source.",
    },
}


def option_help(method: str, name: str) -> str:
    """One line: what the option does and its paper's value ("" if there is none)."""
    return METHOD.get(method, {}).get(name) or SHARED.get(name, "")
