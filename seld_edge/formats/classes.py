"""Sound event classes of STARSS22/23 and DCASE 2022-2025 task 3 (13 classes, index order)."""

STARSS23_CLASSES: tuple[str, ...] = (
    "female_speech",
    "male_speech",
    "clapping",
    "telephone",
    "laughter",
    "domestic_sounds",
    "footsteps",
    "door",
    "music",
    "musical_instrument",
    "water_tap",
    "bell",
    "knock",
)

NUM_CLASSES = len(STARSS23_CLASSES)
