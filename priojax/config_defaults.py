"""Shared defaults of every experiment: the config files start from here.

Each config file (``configs/*.py``, or a user's own anywhere on disk) calls
``get_config`` here and sets ``priority.name``; it lives in the package so
that a config file outside the checkout imports it as well::

    from priojax import config_defaults

    def get_config(arg=None):
      config = config_defaults.get_config(arg)
      config.priority.name = 'my_package.formulas:low_fg'
      return config

The argument is a comma-separated list of:

* ``smoke``: shrink everything to seconds (tiny images, a tiny U-Net, a
  handful of steps): what the end-to-end tests run;
* ``geotiff``: run on your own GeoTIFF scenes instead of the synthetic
  benchmark; give the manifest with ``--config.data.manifest=path.yaml``
  (format in priojax/geo/manifest.py and docs/own_imagery.md); with the recipe for
  real imagery (``REAL_IMAGERY_RECIPE`` below: the pretrained encoder);
* ``real``: the real-imagery benchmark (DSG orthophotos of Rio Grande do
  Sul, priojax/data/rio_grande.py; fetched by pip once per machine) with the
  same recipe;
* ``full_pool``: the full-pool reference of the same recipe: one round that
  labels the whole target pool (``rounds.k=0``) and fine-tunes for as many
  steps as all the rounds together; give it the main run's source model
  with ``--config.pretrain.from_workdir=<that workdir>``.
"""

import ml_collections


# Building segmentation on real imagery (measured in docs/real_imagery.md):
# an ImageNet-pretrained MobileNetV2 encoder under a U-Net
# decoder, for the real benchmark (`real`) and for a user's own scenes
# (`geotiff`) alike. The loss (BCE + soft Dice), the dihedral augmentation
# and the per-round warm-up + cosine learning rate are the same for every
# config.
REAL_IMAGERY_RECIPE = {
    'data': dict(tile_size=128),
    'model': dict(encoder='mobilenet_v2', encoder_weights='imagenet', width=8, encoder_lr_scale=0.1),
    'pretrain': dict(steps=750, batch_size=4, learning_rate=2e-3, head_steps=400),
    # The budget is counted in pixels: 5 chips of 128 px = 20 of 64 px.
    'rounds': dict(num_rounds=5, k=5),
    'finetune': dict(steps=150, batch_size=4, learning_rate=1e-3),
}
REAL_DATA = dict(kind='rio_grande_dsg', tile_size=128)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # A resumed workdir refuses a changed config unless this is set.
  c.allow_config_change = False

  c.data = ml_collections.ConfigDict(dict(
      kind='crisis_bench',  # or 'geotiff' (a manifest of the user's scenes)
      manifest='',  # for kind='geotiff'
      source_val_fraction=0.2,  # for kind='geotiff': source chips held out for the head
      data_dir='~/.cache/priojax/tensorflow_datasets',
      split_seed=-1,  # seed of the data (benchmark tiles, source val split); -1: config.seed
      tile_size=64,
      num_source_train=600,
      num_source_val=150,
      num_target_pool=800,
      num_target_test=300,
  ))
  c.model = ml_collections.ConfigDict(dict(
      depth=3, width=8, norm='group', dropout=0.0, dtype='float32',
      # 2x upsampling: 'depth_to_space' (a dense layer + depth-to-space, the
      # fast form) or 'conv_transpose'; the same map and parameters.
      upsample='depth_to_space',
      head_hidden=64, embed_dim=128,
      # 'none': the U-Net above, trained from scratch; 'mobilenet_v2': an
      # ImageNet-pretrained encoder (priojax/models/encoder_unet.py) under a
      # decoder of `width` x (16, 8, 4, 2, 1) channels; `depth` and
      # `upsample` are then the encoder's (stride 32, nearest upsampling).
      encoder='none',
      encoder_weights='imagenet',  # or 'random'
      encoder_lr_scale=1.0,  # the encoder's learning rate, as a fraction of the decoder's
  ))
  c.pretrain = ml_collections.ConfigDict(dict(
      steps=700, batch_size=16, learning_rate=2e-3,
      head_steps=400,
      # Another workdir whose round-0 (pretrained) checkpoint to start from,
      # so strategies compared side by side share one source model.
      from_workdir='',
  ))
  c.rounds = ml_collections.ConfigDict(dict(num_rounds=6, k=25))  # k=0: the whole pool in one round
  c.finetune = ml_collections.ConfigDict(dict(
      steps=300, batch_size=16, learning_rate=1e-3,
      init='previous',  # or 'pretrained': restart every round from the source model
      source_replay=0.25,  # fraction of each batch drawn from source tiles
  ))
  c.head = ml_collections.ConfigDict(dict(
      holdout_fraction=0.2,  # share of target labels kept for the IoU head only
      steps=400, batch_size=64, learning_rate=3e-3,
      rank_weight=1.0, rank_margin=0.05,
      loss_rank_margin=0.1,  # ξ of the Learning-Loss head's ranking loss
      iou_smoothing=16.0,  # pixels; see priojax/tile_metrics.py
  ))
  c.priority = ml_collections.ConfigDict(dict(
      name='iou', alpha=1.0, beta=1.0,
      source_reference=256,  # source tiles that count as labelled for diversity
      aggregation='mean',  # pixel scores -> tile: mean | topq | region
      top_q=0.1, region=8,  # the top-q fraction; the region side in px
      mc_passes=8,  # MC-dropout passes for bald / mc_variance (needs model.dropout > 0)
      # How a score formula's batch is taken: 'top_k', or 'power': drawn with
      # p ∝ score^power_beta (stochastic batch acquisition, Kirsch et al. 2023).
      acquisition='top_k', power_beta=1.0,
      # A formula's own constants, read by ctx.hparam(name) (set them in a
      # config file: config.priority.params = {'gamma': 2.0}).
      params=ml_collections.ConfigDict(),
  ))
  c.scoring = ml_collections.ConfigDict(dict(batch_size=64))
  c.eval = ml_collections.ConfigDict(dict(threshold=0.5))
  # review.html (priojax/review/): kept small for any pool. Scene overlays
  # at most max_side px a side, the top max_rows picks in its table,
  # predictions on at most max_chips chips a round, max_scenes scenes.
  c.review = ml_collections.ConfigDict(dict(enabled=True, max_side=1024, max_rows=200, max_scenes=6,
                                            max_chips=2048, thumbnail=64))

  args = set(filter(None, (arg or '').split(',')))
  unknown = args - {'smoke', 'geotiff', 'real', 'full_pool'}
  if unknown:
    raise ValueError(f'unknown config arguments {sorted(unknown)}; expected "smoke", "geotiff", "real" '
                     'or "full_pool"')
  if {'geotiff', 'real'} <= args:
    raise ValueError('config arguments "geotiff" and "real" exclude each other')
  if 'geotiff' in args:
    c.data.kind = 'geotiff'
  if 'real' in args:
    c.data.update(REAL_DATA)
  if args & {'geotiff', 'real'}:
    for section, values in REAL_IMAGERY_RECIPE.items():
      c[section].update(values)
  if 'smoke' in args:
    c.data.update(tile_size=32, num_source_train=48, num_source_val=16,
                  num_target_pool=40, num_target_test=16)
    # The tiny from-scratch U-Net even under `real` and `geotiff`: seconds,
    # not the encoder's compile.
    c.model.update(depth=2, width=4, head_hidden=16, embed_dim=16, encoder='none')
    c.pretrain.update(steps=6, batch_size=8, head_steps=10)
    c.rounds.update(num_rounds=1, k=6)
    c.finetune.update(steps=4, batch_size=8)
    c.head.update(steps=10, batch_size=16, iou_smoothing=4.0)
    c.priority.update(source_reference=16, mc_passes=2)
    c.scoring.update(batch_size=16)
  if 'full_pool' in args:
    c.finetune.steps *= max(1, c.rounds.num_rounds)
    c.rounds.update(num_rounds=1, k=0)
  return c
