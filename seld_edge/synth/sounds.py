"""Thirteen synthetic sound types, one per STARSS23 class.

The generated data set has to be learnable by a small CNN in a few minutes, so every class gets a
sound that differs from the others in spectrum *and* temporal pattern (voiced formants at two pitch
ranges, noise bursts, a dual-tone ring cadence, inharmonic partials, ...), with random variation
inside the class so a model cannot memorise one waveform. Everything is vectorised: impulse trains
shaped by IIR filters (scipy ``lfilter``) and additive synthesis over (harmonic, sample) arrays, no
per-sample Python loops.
"""

from collections.abc import Callable

import numpy as np
from scipy import signal

from seld_edge.formats.classes import STARSS23_CLASSES

LOUDNESS_BLOCK_S = 0.05
FADE_S = 0.005

# Formants (Hz) of five vowels /a/ /i/ /u/ /e/ /o/ of an adult male voice; female voices scale them up.
VOWEL_FORMANTS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]], dtype=np.float64
)
FORMANT_GAINS = (1.0, 0.5, 0.25)
FORMANT_DECAY_S = (0.004, 0.003, 0.002)  # ringing time of each formant resonance (bandwidth ~ 80-160 Hz)

SoundGenerator = Callable[[int, np.random.Generator, int], np.ndarray]


def synthesize(class_index: int, n_samples: int, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A (n_samples,) sound of the class with short fades, its loudest 50 ms at RMS 1.

    Normalising the loudest block (not the whole event) gives sparse sounds (knocks, footsteps) the
    same perceived level as continuous ones, so level differences in a scene come from distance.
    """
    sound = GENERATORS[STARSS23_CLASSES[class_index]](n_samples, rng, sample_rate)
    sound = sound * _fades(n_samples, sample_rate)
    return sound / _loudest_block_rms(sound, sample_rate)


def _fades(n: int, sr: int) -> np.ndarray:
    """Raised-cosine fade in and out, so events start and stop without clicks."""
    length = max(1, min(int(FADE_S * sr), n // 2))
    ramp = np.sin(0.5 * np.pi * np.arange(length) / length) ** 2
    envelope = np.ones(n)
    envelope[:length] = ramp
    envelope[n - length :] = np.minimum(envelope[n - length :], ramp[::-1])
    return envelope


def _loudest_block_rms(x: np.ndarray, sr: int) -> float:
    block = int(LOUDNESS_BLOCK_S * sr)
    padded = np.pad(x, (0, -len(x) % block))
    return max(float(np.sqrt(np.max(np.mean(padded.reshape(-1, block) ** 2, axis=1)))), 1e-9)


# --- building blocks -----------------------------------------------------------------------------


def _onsets(seconds: float, rate_hz: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Onset times from 0 at about rate_hz, each interval varied by +-jitter (relative)."""
    count = int(seconds * rate_hz) + 2
    intervals = (1.0 + jitter * rng.uniform(-1.0, 1.0, count)) / rate_hz
    times = np.concatenate([[0.0], np.cumsum(intervals)])
    return times[times < seconds]


def _impulses(n: int, times: np.ndarray, sr: int, amplitudes: np.ndarray | float = 1.0) -> np.ndarray:
    """An impulse train: amplitude at each time (s), zero elsewhere."""
    x = np.zeros(n)
    index = np.round(np.asarray(times) * sr).astype(np.int64)
    amplitudes = np.broadcast_to(amplitudes, index.shape)
    keep = index < n
    np.add.at(x, index[keep], amplitudes[keep])
    return x


def _resonate(x: np.ndarray, freq: float, decay_s: float, sr: int) -> np.ndarray:
    """Two-pole resonance with unit gain at freq: every impulse rings at freq, decaying by 1/e in decay_s."""
    r = np.exp(-1.0 / (decay_s * sr))
    w = 2.0 * np.pi * freq / sr
    gain = (1.0 - r) * np.sqrt(1.0 - 2.0 * r * np.cos(2.0 * w) + r * r)
    return signal.lfilter([gain], [1.0, -2.0 * r * np.cos(w), r * r], x)


def _decay(x: np.ndarray, decay_s: float, sr: int) -> np.ndarray:
    """Exponential envelope: every impulse starts a decay by 1/e in decay_s."""
    return signal.lfilter([1.0], [1.0, -np.exp(-1.0 / (decay_s * sr))], x)


def _unit_noise(n: int, low: float, high: float, rng: np.random.Generator, sr: int) -> np.ndarray:
    """White noise band-passed to [low, high] Hz, with unit RMS."""
    sos = signal.butter(2, [low, high], btype="bandpass", fs=sr, output="sos")
    noise = signal.sosfilt(sos, rng.standard_normal(n))
    return noise / np.std(noise)


def _since_last(t: np.ndarray, onsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each time, the index of the last onset at or before it and the time elapsed since."""
    index = np.maximum(np.searchsorted(onsets, t, side="right") - 1, 0)
    return index, t - onsets[index]


def _periodic_impulses(rate: np.ndarray, sr: int) -> np.ndarray:
    """One unit impulse per period of a time-varying rate (Hz, one value per sample)."""
    return np.diff(np.floor(np.cumsum(rate) / sr), prepend=0.0)


def _glottal(f0: np.ndarray, sr: int) -> np.ndarray:
    """Voice source: one impulse per pitch period of f0, low-pass tilted like a glottis."""
    return signal.lfilter([1.0], [1.0, -0.9], _periodic_impulses(f0, sr))


def _formants(excitation: np.ndarray, formants: np.ndarray, sr: int) -> np.ndarray:
    """Parallel formant resonators (three frequencies in Hz) applied to an excitation."""
    return sum(
        gain * _resonate(excitation, freq, decay, sr)
        for freq, gain, decay in zip(formants, FORMANT_GAINS, FORMANT_DECAY_S, strict=True)
    )


# --- the thirteen classes ------------------------------------------------------------------------


def _speech(
    n: int, rng: np.random.Generator, sr: int, f0_range: tuple[float, float], formant_scale: float
) -> np.ndarray:
    """Syllables of random vowels on a voice with intonation, a consonant hiss at some onsets, pauses."""
    t = np.arange(n) / sr
    seconds = n / sr
    contour = 1.0 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t + rng.uniform(0, 2 * np.pi))
    f0 = rng.uniform(*f0_range) * contour * (1.0 - 0.1 * t / max(seconds, 1.0))
    voice = _glottal(f0, sr)
    onsets = _onsets(seconds, rng.uniform(3.5, 5.5), 0.3, rng)
    bounds = np.append(np.round(onsets * sr).astype(np.int64), n)
    vowels = rng.integers(0, len(VOWEL_FORMANTS), len(onsets))
    out = np.zeros(n)
    for start, stop, vowel in zip(bounds[:-1], bounds[1:], vowels, strict=True):
        out[start:stop] = _formants(voice[start:stop], VOWEL_FORMANTS[vowel] * formant_scale, sr)
    syllable, elapsed = _since_last(t, onsets)
    length = np.diff(np.append(onsets, seconds))[syllable]
    voiced = rng.random(len(onsets)) > 0.15  # some syllables are pauses between words
    envelope = np.sin(np.pi * np.clip(elapsed / (0.8 * length), 0.0, 1.0)) * voiced[syllable]
    consonants = _impulses(n, onsets[rng.random(len(onsets)) < 0.5], sr)
    hiss = _unit_noise(n, 2500, 6000, rng, sr) * _decay(consonants, 0.03, sr)
    return out / np.std(out) * envelope + 0.4 * hiss


def _female_speech(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    return _speech(n, rng, sr, (180.0, 250.0), 1.17)


def _male_speech(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    return _speech(n, rng, sr, (85.0, 135.0), 1.0)


def _clapping(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A train of short mid-band noise bursts at 3.5-6 claps per second."""
    onsets = _onsets(n / sr, rng.uniform(3.5, 6.0), 0.1, rng)
    envelope = _decay(_impulses(n, onsets, sr, rng.uniform(0.7, 1.0, len(onsets))), rng.uniform(0.008, 0.012), sr)
    return _unit_noise(n, 700, 3500, rng, sr) * envelope


def _telephone(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Two steady tones ~50 Hz apart in the double-ring cadence 0.4 s on, 0.2 off, 0.4 on, 1.0 off."""
    t = np.arange(n) / sr
    low = rng.uniform(380.0, 450.0)
    tones = np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * (low + rng.uniform(40.0, 60.0)) * t)
    phase = t % 2.0
    gate = ((phase < 0.4) | ((phase >= 0.6) & (phase < 1.0))).astype(np.float64)
    return np.tanh(1.5 * tones) * signal.lfilter([0.01], [1.0, -0.99], gate)  # ringer distortion, soft gate


def _laughter(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Breathy high-pitched "ha" pulses at 4-6 Hz, pitch and level falling over the laugh."""
    t = np.arange(n) / sr
    f0 = rng.uniform(250.0, 380.0) * (1.0 - 0.25 * t / max(n / sr, 1.0))
    excitation = _glottal(f0, sr) + 0.4 * rng.standard_normal(n)
    voice = _formants(excitation, VOWEL_FORMANTS[0] * 1.15, sr)
    rate = rng.uniform(4.0, 6.0)
    pulses = np.sin(np.pi * ((t * rate) % 1.0) / 0.7) * (((t * rate) % 1.0) < 0.7)
    return voice * pulses * np.exp(-t / rng.uniform(1.5, 3.0))


def _domestic_sounds(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """An appliance motor: a spinning-up harmonic hum under band-limited airflow noise."""
    t = np.arange(n) / sr
    f0 = rng.uniform(50.0, 120.0) * (1.0 - 0.5 * np.exp(-t / 0.15))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    k = np.arange(1, 11)[:, None]
    hum = np.sum(np.sin(k * phase) / k, axis=0)
    air = _unit_noise(n, 300, 2500, rng, sr)
    wobble = 1.0 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    return (hum / np.std(hum) + 0.7 * air) * wobble


def _footsteps(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Low heel thuds and softer toe taps at a walking pace, with a little shoe scuff."""
    onsets = _onsets(n / sr, rng.uniform(1.6, 2.2), 0.08, rng)
    heel = _impulses(n, onsets, sr)
    toe = _impulses(n, onsets + rng.uniform(0.06, 0.1), sr, 0.5)
    thud = _resonate(heel + toe, rng.uniform(60.0, 110.0), 0.03, sr)
    scuff = _unit_noise(n, 1500, 5000, rng, sr) * _decay(heel, 0.025, sr)
    return thud / np.max(np.abs(thud)) + 0.05 * scuff


def _door(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A hinge creak whose rasp rate rises, ended by the slam of the door."""
    t = np.arange(n) / sr
    seconds = n / sr
    creak_end = rng.uniform(0.5, 0.8) * seconds
    rate = np.interp(t, [0.0, creak_end], [rng.uniform(20.0, 40.0), rng.uniform(60.0, 120.0)])
    rasp = _periodic_impulses(rate, sr) * (t < creak_end) * np.minimum(1.0, 2.0 * t / creak_end)
    creak = sum(_resonate(rasp, freq, 0.008, sr) for freq in rng.uniform([450, 1200, 2400], [600, 1600, 2900]))
    slam = _impulses(n, np.array([creak_end]), sr)
    boom = _resonate(slam, rng.uniform(60.0, 90.0), 0.12, sr)
    crack = _unit_noise(n, 200, 2000, rng, sr) * _decay(slam, 0.04, sr)
    return creak / np.max(np.abs(creak)) + 2.0 * boom / np.max(np.abs(boom)) + 0.4 * crack


def _music(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Sustained organ-like triads with a bass line, changing every two beats, and hi-hat ticks."""
    t = np.arange(n) / sr
    beat = rng.uniform(0.4, 0.6)
    chord_index = (t // (2 * beat)).astype(np.int64)
    roots = rng.choice([0, 2, 5, 7, 9], chord_index[-1] + 1)
    minor = rng.random(chord_index[-1] + 1) < 0.4
    semitones = np.stack([roots, roots + 4 - minor, roots + 7, roots - 12])[:, chord_index]
    freqs = rng.uniform(150.0, 250.0) * 2.0 ** (semitones / 12.0)
    phases = 2 * np.pi * np.cumsum(freqs, axis=1) / sr
    harmonics = np.arange(1, 5)[:, None, None]
    tones = np.sum(np.sin(harmonics * phases) / harmonics, axis=(0, 1))
    ticks = _unit_noise(n, 6000, 11000, rng, sr) * _decay(_impulses(n, np.arange(0, n / sr, beat / 2), sr), 0.02, sr)
    return tones / np.std(tones) + 0.7 * ticks


def _musical_instrument(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """A plucked string playing a pentatonic melody: bright attacks, upper harmonics dying first."""
    t = np.arange(n) / sr
    onsets = np.arange(0.0, n / sr, 1.0 / rng.uniform(3.0, 5.0))
    pitch = rng.uniform(220.0, 440.0) * 2.0 ** (rng.choice([0, 2, 4, 7, 9, 12, 14, 16], len(onsets)) / 12.0)
    note, elapsed = _since_last(t, onsets)
    k = np.arange(1, 9)[:, None]
    decay = rng.uniform(0.3, 0.5) / np.sqrt(k)
    return np.sum(np.exp(-elapsed / decay) * np.sin(2 * np.pi * k * pitch[note] * elapsed) / k, axis=0)


def _water_tap(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Steady high-frequency hiss with a fast random gurgle in its level."""
    return _unit_noise(n, 1000, 8000, rng, sr) * (1.0 + 0.5 * _unit_noise(n, 5, 30, rng, sr))


def _bell(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Inharmonic church-bell partials (hum, prime, tierce, quint, nominal ...) struck about once a second."""
    t = np.arange(n) / sr
    _, elapsed = _since_last(t, np.arange(0.0, n / sr, rng.uniform(0.7, 1.5)))
    ratios = np.array([0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 3.0])[:, None]
    amplitudes = np.array([0.5, 1.0, 0.6, 0.4, 0.7, 0.3, 0.2])[:, None]
    decay = rng.uniform(0.6, 1.2) / ratios**0.7
    partials = np.sin(2 * np.pi * rng.uniform(400.0, 900.0) * ratios * t + rng.uniform(0, 2 * np.pi, (len(ratios), 1)))
    return np.sum(amplitudes * np.exp(-elapsed / decay) * partials, axis=0)


def _knock(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    """Groups of two to four sharp wooden knocks, a group about every second."""
    groups = np.arange(0.0, n / sr, rng.uniform(0.8, 1.3))
    count = rng.integers(2, 5)
    onsets = (groups[:, None] + np.arange(count) * rng.uniform(0.1, 0.18)).ravel()
    hits = _impulses(n, onsets, sr, rng.uniform(0.7, 1.0, len(onsets)))
    body = _resonate(hits, rng.uniform(150.0, 300.0), 0.025, sr)
    wood = _resonate(hits, rng.uniform(900.0, 1500.0), 0.008, sr)
    return body / np.max(np.abs(body)) + 0.6 * wood / np.max(np.abs(wood))


GENERATORS: dict[str, SoundGenerator] = {
    "female_speech": _female_speech,
    "male_speech": _male_speech,
    "clapping": _clapping,
    "telephone": _telephone,
    "laughter": _laughter,
    "domestic_sounds": _domestic_sounds,
    "footsteps": _footsteps,
    "door": _door,
    "music": _music,
    "musical_instrument": _musical_instrument,
    "water_tap": _water_tap,
    "bell": _bell,
    "knock": _knock,
}
