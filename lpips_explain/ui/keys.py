"""Names of session-state entries and widget keys, in one place so pages and tests agree."""

from __future__ import annotations

# --- session state (plain values, not widgets: they survive page switches) ---------------
PAIR = "current_pair"  # ui.inputs.Pair: the pair chosen or uploaded on Explain
TRIPLET = "current_triplet"  # ui.inputs.Triplet: the triplet chosen or uploaded on Triplet
SWAP = "swap_roles"  # bool: B is the reference and A is explained
KEEP_PREFIX = "keep__"  # copies of widget values, restored on every page (ui.state)
LINKS_APPLIED = "links_applied"  # the URL's query parameters were read (once per session)
PRESENT = "present_mode"  # toggle: presentation mode (also ?present=1)
UPLOADED = "__uploaded__"  # the sample pickers' entry for "your uploaded images"
DRAWN = "drawn_figures"  # ui.widgets.drawn: the figures of the page last drawn, for reruns

# --- sidebar widgets (shared by every page) ------------------------------------------------
NET = "sb_net"
VERSION = "sb_version"
BACKBONE = "sb_backbone"
BACKBONE_PATH = "sb_backbone_path"
SEED = "sb_seed"
SIZE_POLICY = "sb_size_policy"
LIN_KIND = "sb_lin_kind"  # "official" or "file"
LIN_PATH = "sb_lin_path"
PRECISION = "sb_precision"  # fp32 (exact) or an approximate mode (core.modes)
METHOD = "sb_method"
IG_STEPS = "sb_ig_steps"
OCCLUSION_WINDOW = "sb_occlusion_window"
GRADCAM_LAYER = "sb_gradcam_layer"
SMOOTHGRAD_SAMPLES = "sb_smoothgrad_samples"
TOP_K = "sb_top_k"
PATCH = "sb_patch"
USE_RANDOM = "use_random_trunk"  # the button offered when ImageNet weights are missing
INSTALL_TRUNK = "install_trunk"  # ... and the one that installs the published trunk instead
USE_FITTING_TRUNK = "use_fitting_trunk"  # a weights file of another trunk: switch to that trunk
USE_IMAGENET = "use_imagenet_trunk"  # ... or keep the trunk with the published weights
INSTALL_TRUNKS_SIDEBAR = "install_trunks_sidebar"  # the Weights panel: install missing trunks

# --- Explain page ---------------------------------------------------------------------------
UPLOAD_A = "upload_a"
UPLOAD_B = "upload_b"
SAMPLE_PAIR = "sample_pair"
SWAP_BUTTON = "swap_button"
WHERE_VIEW = "where_view"  # spatial map or attribution map
WANT_SENSITIVITY = "want_sensitivity"  # the person asked for the sensitivity on Explain
SENSITIVITY_BUTTON = "sensitivity_button"
WHERE_OPACITY = "where_opacity"
MAP_LAYER = "map_layer"
MAP_UPSAMPLE = "map_upsample"
CHANNEL_LAYER = "channel_layer"
CHANNEL_VIEW = "channel_view"
ATTR_VIEW = "attr_view"
SWEEP_PICK = "sweep_pick"
REPAIR_AREA = "repair_area"
DOWNLOAD_JSON = "download_json"
# Widgets whose default is read off the result (largest layer, most sensitive sweep, half
# area): they reset when the explained pair changes (ui.state.reset_when_changed).
RESULT_INPUTS = "result_inputs"
RESULT_DEFAULT_WIDGETS = (CHANNEL_LAYER, SWEEP_PICK, REPAIR_AREA)
DOWNLOAD_HTML = "download_html"
DOWNLOAD_PNG = "download_png"

# --- Triplet page ---------------------------------------------------------------------------
TRIPLET_UPLOAD_REF = "triplet_upload_ref"
TRIPLET_UPLOAD_A = "triplet_upload_a"
TRIPLET_UPLOAD_B = "triplet_upload_b"
SAMPLE_TRIPLET = "sample_triplet"
TRIPLET_MAP_VIEW = "triplet_map_view"
TRIPLET_ATTR_VIEW = "triplet_attr_view"
TRIPLET_DOWNLOAD_JSON = "triplet_download_json"
TRIPLET_DOWNLOAD_HTML = "triplet_download_html"
TRIPLET_DOWNLOAD_PNG = "triplet_download_png"

# --- Sensitivity page -----------------------------------------------------------------------
SENS_TRANSFORMS = "sens_transforms"
SENS_POINTS = "sens_points"
SENS_RANGE_PREFIX = "sens_range_"  # + perturbation name

# --- Diagnostics page -----------------------------------------------------------------------
DIAG_FALLBACK = "diag_fallback"

# --- Calibrate page -------------------------------------------------------------------------
CAL_SOURCE = "cal_source"  # "sample" or "upload"
CAL_ZIP = "cal_zip"
CAL_CSV = "cal_csv"
CAL_INIT = "cal_init"
CAL_RECIPE = "cal_recipe"  # "auto" or "official"
CAL_EPOCHS = "cal_epochs"
CAL_DECAY = "cal_decay_epochs"
CAL_LR = "cal_lr"
CAL_BATCH = "cal_batch"
CAL_VAL = "cal_val_fraction"
CAL_PATIENCE = "cal_patience"
CAL_SIZE = "cal_size"
CAL_TRAIN = "cal_train"
CAL_CANCEL = "cal_cancel"
CAL_TRAIN_REQUEST = "cal_train_request"  # True from a Train click until a run starts it
CAL_CANCEL_REQUEST = "cal_cancel_request"
CAL_RUNNING = "cal_running"  # (result key, threading.Event set once that training stored its heads)
CAL_OPEN_REQUEST = "cal_open_request"  # the id of the triplet to open on the Triplet page
CAL_CHANGED_PICK = "cal_changed_pick"
CAL_OPEN = "cal_open_triplet"
CAL_USE_HEADS = "cal_use_heads"
CAL_OFFICIAL_HEADS = "cal_official_heads"
CAL_DL_LIN = "cal_download_lin"
CAL_DL_JSON = "cal_download_json"
CAL_DL_ZIP = "cal_download_zip"
GAP_ZIP_A = "gap_zip_a"
GAP_ZIP_B = "gap_zip_b"
