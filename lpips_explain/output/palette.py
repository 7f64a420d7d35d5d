"""The palette: one meaning per colour, the same in the app, the HTML report and the PNG summary.

- a map over a photo: the photo in grey (lightened), so that every colour is the map's,
  and the map fading in with its value: where it is small the photo shows through;
- an amount over a photo (a distance, a magnitude): yellow, orange, dark red as it grows
  (ColorBrewer YlOrRd, ordered in lightness); on its own (channel maps): Inferno;
- a signed effect on the distance: red raises it, blue lowers it (RdBu, centred at 0);
- the two candidates of a triplet: purple = A (or "favours A"), orange = B (PuOr);
- an LPIPS distance as a line or bar: charcoal; PSNR green; SSIM brown; guides grey.
"""

DISTANCE = "#3d3d47"  # an LPIPS distance drawn as a line or a bar
DISTANCE_TOTAL = "#1b1b22"
RAISES = "#b2182b"  # raises the distance (the red end of RdBu)
LOWERS = "#2166ac"  # lowers the distance (the blue end of RdBu)
CANDIDATE_A = "#542788"  # triplet candidate A, or "favours A" (the purple end of PuOr)
CANDIDATE_B = "#e08214"  # triplet candidate B, or "favours B" (the orange end of PuOr)
PSNR_COLOR = "#1b7837"
SSIM_COLOR = "#8c510a"
GUIDE = "#7a7a7a"  # reference lines: half the distance, thresholds
NEUTRAL = "#9e9e9e"
BOX_DARK, BOX_LIGHT = "#1b1b22", "#ffffff"  # the hottest window: dark line, light inner edge
# The same two colours where they mean the side a layer or a patch favours.
FAVOUR_A = CANDIDATE_A
FAVOUR_B = CANDIDATE_B

# Plotly's Inferno with its first stop nudged off #000004: Streamlit's chart theming draws
# that exact colour as lavender, which makes the lowest values look higher than they are.
INFERNO = [[i / 9, c] for i, c in enumerate(
    ["#07041a", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06",
     "#f7d13d", "#fcffa4"])]
# Over a photo, a map fades in with its value: where the value is small (or, for a signed
# map, near 0) the photo shows through. An amount's alpha rises as (t / AMOUNT_FADE_IN)^1.5
# over the lower AMOUNT_FADE_IN of its scale: a distance map has a floor everywhere (its
# median is about the distance), which stays faint, while the worst region is opaque. A
# signed map's alpha rises linearly over FADE_IN of each half (its scale is clipped at a
# percentile: few values reach the ends). The colour bar shows the colours as they fall on
# a mid-grey photo.
FADE_IN = 0.3
AMOUNT_FADE_IN = 0.6
AMOUNT_FADE_POWER = 1.5
AMOUNT = "amount"  # colorize's name for the amount colour map (AMOUNT_STOPS)
AMOUNT_STOPS = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c",
                "#bd0026", "#800026")  # ColorBrewer YlOrRd
# The photo under a map: its luminance drawn from GREY_LOW to GREY_HIGH (a lightened grey:
# dark red stays readable over its shadows, yellow over its highlights is only the map's).
GREY_LOW, GREY_HIGH = 60, 228
MID_GREY = (GREY_LOW + GREY_HIGH) / 2
MPL_SEQUENTIAL = "inferno"
MPL_DIVERGING = "RdBu_r"
MPL_CANDIDATES = "PuOr"
CLIP_PERCENTILE = 99.5  # signed colour scales stop here, so a few pixels cannot wash out the rest
