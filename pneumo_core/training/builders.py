"""MobileNetV2 transfer-learning classifiers: the builders, and the output ensemble of several runs.

Architecture (both variants)::

    image (224x224x3, preprocessed to [-1, 1])
      -> MobileNetV2 base (ImageNet, include_top=False), last conv block ``out_relu``
      -> GlobalAveragePooling2D [-> BatchNormalization, fine-tuned only] -> Dropout
      -> Dense(1) named ``logit`` -> sigmoid named ``p_pneumonia``

The logit is a layer of its own so Grad-CAM can differentiate the pre-sigmoid score.
"""
from __future__ import annotations

from pathlib import Path

from pneumo_core.config import FINE_TUNE_LAYERS, IMAGE_SIZE, SHIPPED_VARIANTS
from pneumo_core.inference.model_files import BASE_NAME, split_model


def build_backbone(weights: str | None = "imagenet"):
    """ImageNet MobileNetV2 without its top. ``weights``: ``"imagenet"`` (Keras' download),
    a local ``.weights.h5`` file (offline use), or ``None`` (random, for tests)."""
    import keras

    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise FileNotFoundError(f"backbone weights file not found: {weights}")
    base = keras.applications.MobileNetV2(
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), alpha=1.0, include_top=False, weights=weights
    )
    base.name = BASE_NAME
    return base


def build_head(variant: str, feature_dim: int, dropout: float = 0.3):
    """Classifier head on the pooled backbone features (also trained alone on cached features)."""
    import keras

    features = keras.Input((feature_dim,), name="pooled_features")
    x = features
    if variant == "finetuned":
        x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    prob = keras.layers.Activation("sigmoid", name="p_pneumonia", dtype="float32")(logit)
    return keras.Model(features, prob, name=f"{variant}_head")


def set_trainable(base, variant: str, fine_tune_layers: int = FINE_TUNE_LAYERS) -> None:
    """frozen: nothing trainable. finetuned: the top ``fine_tune_layers`` layers, except
    BatchNormalization (kept frozen: their statistics come from ImageNet and a batch of 32
    films would only make them noisy)."""
    import keras

    base.trainable = variant == "finetuned"
    if variant == "finetuned":
        for i, layer in enumerate(base.layers):
            top = i >= len(base.layers) - fine_tune_layers
            layer.trainable = top and not isinstance(layer, keras.layers.BatchNormalization)


def build_model(variant: str, weights: str | None = "imagenet", dropout: float = 0.3, base=None):
    """The full classifier for ``variant`` (``frozen`` or ``finetuned``)."""
    import keras

    if variant not in SHIPPED_VARIANTS:  # the builder makes exactly the variants the product ships
        raise ValueError(f"unknown variant {variant!r}; expected one of {SHIPPED_VARIANTS}")
    base = base if base is not None else build_backbone(weights)
    set_trainable(base, variant)
    head = build_head(variant, base.output_shape[-1], dropout)
    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    # training=False keeps every BatchNormalization in inference mode, also while fine-tuning.
    fmap = base(image, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(fmap)
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(image, x, name=f"pneumonia_mobilenetv2_{variant}")


def _folded_head(member) -> tuple:
    """A member's head in inference mode as one affine map of its pooled features: BatchNorm
    (moving statistics) and Dense(1) folded into (w, b); Dropout is the identity there."""
    import numpy as np

    kernel, bias = member.get_layer("logit").get_weights()
    w, b = kernel[:, 0].astype(np.float64), float(bias[0])
    try:
        bn = member.get_layer("head_bn")
    except ValueError:
        return w, b
    gamma, beta, mean, var = (np.asarray(a, np.float64) for a in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    return w * scale, b + float(w @ (beta - scale * mean))


def _inbound_layer_names(layer_config: dict) -> set:
    """Names of the layers whose outputs feed a layer, from its functional-model config."""
    names, stack = set(), [layer_config.get("inbound_nodes", [])]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            is_tensor = item.get("class_name") == "__keras_tensor__"
            history = item.get("config", {}).get("keras_history") if is_tensor else None
            if history:
                names.add(history[0])
            else:
                stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return names


def shared_trunk_depth(backbones: list) -> int:
    """How many leading layers of ``backbones`` (same architecture) can be computed once for all:
    the largest index ``i`` such that layers ``0..i`` hold identical weights in every backbone and
    layer ``i``'s output is the only tensor the later layers read from before it (a cut of the
    graph). 0 when nothing is shared. Fine-tuning trains the top layers only, so runs started
    from the same ImageNet weights share everything below them."""
    import numpy as np

    layers = backbones[0].get_config()["layers"]
    position = {cfg["name"]: i for i, cfg in enumerate(layers)}
    # reads[i]: the earliest layer that layer i reads; earliest_after[i]: the same over all layers after i
    reads = [min((position[n] for n in _inbound_layer_names(cfg)), default=i) for i, cfg in enumerate(layers)]
    earliest_after = [len(layers)] * len(layers)
    for i in range(len(layers) - 2, -1, -1):
        earliest_after[i] = min(earliest_after[i + 1], reads[i + 1])
    def same(a: list, b: list) -> bool:
        return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))

    depth = 0
    for i in range(len(layers) - 1):
        ref = backbones[0].layers[i].get_weights()
        if not all(same(b.layers[i].get_weights(), ref) for b in backbones[1:]):
            break
        if earliest_after[i] >= i:  # nothing after i reads a tensor from before i
            depth = i
    return depth


def build_ensemble(members: list, name: str = "pneumonia_mobilenetv2_ensemble"):
    """One Keras model whose logit is the mean of the logits of several classifiers built by
    :func:`build_model`.

    It has the single model's shape: a "backbone" (named ``BASE_NAME``) returning every
    member's ``out_relu`` maps side by side on the channel axis, global average pooling, and one
    Dense ``logit``. The layers every member has unchanged (the ImageNet layers below the
    fine-tuned top, see :func:`shared_trunk_depth`) run once, as ``shared_trunk``; each member
    adds only its own top (``member{k}_top``). A member's head is affine in its pooled features
    once BatchNorm and Dropout are in inference mode, so the mean of the members' logits is
    exactly one Dense layer over the concatenated features (weights divided by the member
    count). Grad-CAM, the TFLite export and the fast inference path therefore work unchanged:
    Grad-CAM is the ensemble logit's over all members' last conv maps, and the pooled features
    start with member 0's (the OOD check's). The result is for inference only.
    """
    import keras
    import numpy as np

    parts = [split_model(m)[0] for m in members]

    def architecture(backbone):
        return [c["class_name"] for c in backbone.get_config()["layers"]], backbone.output.shape[-1]

    if any(architecture(p) != architecture(parts[0]) for p in parts[1:]):
        raise ValueError("ensemble members must share the backbone (same feature maps)")
    depth = shared_trunk_depth(parts) if len(parts) > 1 else 0

    def fresh_copy(backbone):
        # A copy with its own layers: the members keep theirs (and stay usable alone).
        copy = keras.models.clone_model(backbone)
        copy.set_weights(backbone.get_weights())
        return copy

    image = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    if depth:
        trunk_src = fresh_copy(parts[0])
        trunk = keras.Model(trunk_src.input, trunk_src.layers[depth].output, name="shared_trunk")
        shared = trunk(image, training=False)
    maps = []
    for k, backbone in enumerate(parts):
        copy = fresh_copy(backbone)
        if depth:
            top = keras.Model(copy.layers[depth].output, copy.output, name=f"member{k}_top")
            maps.append(top(shared, training=False))
        else:
            copy.name = f"member{k}_backbone"
            maps.append(copy(image, training=False))
    all_maps = keras.layers.Concatenate(axis=-1, name="out_relu_all")(maps) if len(maps) > 1 else maps[0]
    backbone = keras.Model(image, all_maps, name=BASE_NAME)
    folded = [_folded_head(m) for m in members]
    x = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(backbone(x, training=False))
    dense = keras.layers.Dense(1, name="logit")
    logit = dense(pooled)
    dense.set_weights([np.concatenate([w for w, _ in folded])[:, None].astype("float32") / len(members),
                       np.array([np.mean([b for _, b in folded])], "float32")])
    prob = keras.layers.Activation("sigmoid", name="p_pneumonia", dtype="float32")(logit)
    return keras.Model(x, prob, name=name)
